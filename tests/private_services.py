"""Private PostgreSQL and RabbitMQ instances that tests may stop, restart and kill.

The PostgreSQL server is :class:`stalwart.dev.postgres.PrivatePostgres` (chaos
campaigns use it too); the RabbitMQ node is defined here.

The shared services on 5432 and 5672 are never touched: each instance has its
own port, data directory and (for RabbitMQ) node name, Erlang cookie,
configuration and no plugins (a :class:`stalwart.dev.rabbitmq.RabbitNode`).
``close()`` stops the instance whatever state it is in and deletes its files.

The fixtures ``private_postgres`` and ``private_rabbit`` give a test a running
instance of its own; a conftest imports them to offer them to its directory.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from stalwart.dev.ports import free_port, port_open
from stalwart.dev.postgres import PrivatePostgres
from stalwart.dev.rabbitmq import RABBITMQ_BIN, NodeSpec, RabbitNode

__all__ = [
    "PrivatePostgres",
    "PrivateRabbit",
    "free_port",
    "port_open",
    "private_postgres",
    "private_rabbit",
]


class PrivateRabbit(RabbitNode):
    """A throw-away RabbitMQ node (:class:`~stalwart.dev.rabbitmq.RabbitNode`) on 127.0.0.1
    with its own name, ports, cookie, data and no plugins; the user is guest."""

    def __init__(self) -> None:
        root = Path(tempfile.mkdtemp(prefix="stalwart-chaos-rmq-"))
        port = free_port()
        spec = NodeSpec(f"chaos-{uuid.uuid4().hex[:8]}", "127.0.0.1", port, free_port(), str(root))
        conf = f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"
        super().__init__(spec, cookie_home=root, conf=conf)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.spec.amqp_port}/"

    def ctl_argv(self, *args: str) -> list[str]:
        """The command line of :meth:`ctl` for another process to run: ``rabbitmqctl -n
        NODE ARGS`` under ``env -i`` with the node's environment (its cookie, long names)."""
        env = [f"{name}={value}" for name, value in self.env.items()]
        return ["env", "-i", *env, str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args]

    def outage(self, seconds: float) -> None:
        """``stop_app``, ``seconds`` of outage, ``start_app`` (whatever happened meanwhile)."""
        try:
            self.ctl("stop_app")
            time.sleep(seconds)
        finally:
            self.ctl("start_app")
            self.wait_ready(90.0)

    def kill9(self, seconds: float) -> None:
        """SIGKILL the node's Erlang VM (no clean shutdown), wait ``seconds``, start it again."""
        try:
            self.kill()
            time.sleep(seconds)
        finally:
            self.start()

    def close(self) -> None:
        """Stop the node (kill it if it does not stop), and delete its files."""
        super().close()
        shutil.rmtree(self.root, ignore_errors=True)


_Server = TypeVar("_Server", PrivatePostgres, PrivateRabbit)


def _absent(request: pytest.FixtureRequest, what: str) -> None:
    """Skip (or fail under STALWART_REQUIRE_SERVICES=1, see tests/conftest.py)."""
    root = Path(__file__).resolve().parent / "conftest.py"
    request.config.pluginmanager.get_plugin(str(root)).need(what, False)


def _running(request: pytest.FixtureRequest, make: Callable[[], _Server]) -> Iterator[_Server]:
    try:
        server = make()
    except FileNotFoundError as exc:
        _absent(request, str(exc))
        raise
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def private_postgres(request: pytest.FixtureRequest) -> Iterator[PrivatePostgres]:
    """A running PostgreSQL of this test alone; stopped and deleted afterwards."""
    yield from _running(request, PrivatePostgres)


@pytest.fixture
def private_rabbit(request: pytest.FixtureRequest) -> Iterator[PrivateRabbit]:
    """A running RabbitMQ node of this test alone; stopped and deleted afterwards."""
    yield from _running(request, PrivateRabbit)
