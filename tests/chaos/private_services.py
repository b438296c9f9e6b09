"""Private PostgreSQL and RabbitMQ instances that chaos tests may stop, restart and kill.

The shared services on 5432 and 5672 are never touched: each instance has its
own port, data directory and (for RabbitMQ) node name, Erlang cookie,
configuration and no plugins (a :class:`stalwart.dev.rabbitmq.RabbitNode`).
``close()`` stops the instance whatever state it is in and deletes its files.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from stalwart.dev.ports import free_port, port_open, wait_port
from stalwart.dev.rabbitmq import NodeSpec, RabbitNode

__all__ = ["PrivatePostgres", "PrivateRabbit", "free_port", "port_open"]


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (initdb + pg_ctl) on its own port and directory.

    PostgreSQL refuses to run as root, so under root the cluster belongs to
    the ``postgres`` user. ``fsync`` is off: a kill of the server (``-m
    immediate``) keeps what the kernel holds, which is all these tests need.
    """

    def __init__(self) -> None:
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not versions:
            raise FileNotFoundError("no PostgreSQL server under /usr/lib/postgresql/*/bin")
        self.bin = Path(versions[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="stalwart-chaos-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> None:
        command = [*self._as, str(self.bin / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr.strip()}")

    def _ctl(self, action: str, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        log = str(self.root / "server.log")
        self._run("pg_ctl", action, "-D", str(self.data), "-w", "-o", options, "-l", log, *args)

    def start(self) -> None:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        if not port_open(self.port):
            self._ctl("start")
        wait_port(self.port, 30.0, "private PostgreSQL")

    def restart(self, mode: str, down: float) -> None:
        """``pg_ctl stop -m fast|immediate``, ``down`` seconds away, then start again.

        Every connection is cut. The server runs afterwards even if stopping failed.
        """
        try:
            self.stop(mode)
            time.sleep(down)
        finally:
            self.start()

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-w", "-m", mode)

    def close(self) -> None:
        """Stop the server (whatever its state) and delete the cluster."""
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


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
