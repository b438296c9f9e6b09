"""Private PostgreSQL and RabbitMQ instances that chaos tests may stop, restart and kill.

The shared services on 5432 and 5672 are never touched: each instance has its
own port, data directory and (for RabbitMQ) node name, Erlang cookie,
configuration and no plugins. ``close()`` stops the instance whatever state
it is in and deletes its files.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psutil

__all__ = ["PrivatePostgres", "PrivateRabbit", "free_port", "port_open"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f}s")
        time.sleep(0.05)


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
        _wait_port(self.port, 30.0, "private PostgreSQL")

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


class PrivateRabbit:
    """A throw-away RabbitMQ node with its own name, ports, cookie, data and no plugins."""

    SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"

    def __init__(self) -> None:
        if not Path(self.SERVER).exists():
            raise FileNotFoundError(f"no RabbitMQ server at {self.SERVER}")
        self.root = Path(tempfile.mkdtemp(prefix="stalwart-chaos-rmq-"))
        self.port = free_port()
        self.node = f"chaos-{uuid.uuid4().hex[:8]}@localhost"
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self._server: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self, timeout: float = 90.0) -> None:
        if self._server is None or self._server.poll() is not None:
            log = (self.root / "server.out").open("ab")
            self._server = subprocess.Popen(
                [self.SERVER],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
        _wait_port(self.port, timeout, f"private RabbitMQ {self.node}")

    def ctl(self, *args: str, timeout: float = 120.0) -> None:
        command = [self.CTL, "-n", self.node, *args]
        done = subprocess.run(command, env=self.env, capture_output=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.decode()}")

    def outage(self, seconds: float) -> None:
        """``stop_app``, ``seconds`` of outage, ``start_app`` (whatever happened meanwhile)."""
        try:
            self.ctl("stop_app")
            time.sleep(seconds)
        finally:
            self.ctl("start_app")
            _wait_port(self.port, 90.0, f"private RabbitMQ {self.node}")

    def kill9(self, seconds: float) -> None:
        """SIGKILL the node's Erlang VM (no clean shutdown), wait ``seconds``, start it again."""
        try:
            if self._server is not None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    for child in psutil.Process(self._server.pid).children(recursive=True):
                        if child.name().startswith("beam"):
                            child.send_signal(signal.SIGKILL)
                self._end_group(signal.SIGKILL)
            time.sleep(seconds)
        finally:
            self.start()

    def _end_group(self, sig: int) -> None:
        if self._server is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._server.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._server.wait(30)

    def close(self) -> None:
        """Stop the node (kill it if it does not stop), and delete its files."""
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self.ctl("stop", timeout=60.0)
        self._end_group(signal.SIGTERM)
        self._end_group(signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
