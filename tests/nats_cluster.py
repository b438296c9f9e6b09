"""A private three-node NATS JetStream cluster on this host, for tests that kill nodes.

Each node is a ``nats-server`` process with its own client port, cluster
port, store directory and configuration file; the shared server on 4222 is
never touched. ``launch()`` starts them and ``formed()`` waits until JetStream has a meta leader (a
stream with three replicas can be created); ``kill(name)`` stops one node
at once (SIGKILL, as a crash); ``close()`` stops every node and deletes its
files.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import nats
from nats.js.api import StreamConfig

from waiting import until

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
_NAMES = ("n1", "n2", "n3")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsCluster:
    """Three JetStream nodes routed to each other; ``url`` lists them all."""

    def __init__(self) -> None:
        if not Path(NATS_SERVER).exists():
            raise FileNotFoundError(
                f"nats-server not found ({NATS_SERVER}); apt-get install nats-server"
            )
        self.folder = Path(tempfile.mkdtemp(prefix="stalwart-nats-cluster-"))
        self.ports = {name: _free_port() for name in _NAMES}
        self.routes = {name: _free_port() for name in _NAMES}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{self.ports[name]}" for name in _NAMES)

    def _config(self, name: str) -> Path:
        routes = ", ".join(
            f"nats-route://127.0.0.1:{self.routes[other]}" for other in _NAMES if other != name
        )
        path = self.folder / f"{name}.conf"
        path.write_text(
            f"server_name: {name}\n"
            f"listen: 127.0.0.1:{self.ports[name]}\n"
            f"jetstream {{ store_dir: {self.folder / name} }}\n"
            f"cluster {{ name: stalwart-test, listen: 127.0.0.1:{self.routes[name]}, "
            f"routes: [{routes}] }}\n"
        )
        return path

    def launch(self) -> None:
        """Start the three processes (then await :meth:`formed`)."""
        for name in _NAMES:
            with open(self.folder / f"{name}.log", "wb") as log:
                self.processes[name] = subprocess.Popen(
                    [NATS_SERVER, "-c", str(self._config(name))], stdout=log, stderr=log
                )

    async def formed(self, timeout: float = 30.0) -> None:
        """Wait until JetStream can place a stream on all three nodes."""
        await until(
            self._ready,
            timeout,
            f"the NATS cluster to form (see {self.folder}/*.log)",
            interval=0.25,
        )

    async def _ready(self) -> bool:
        """True once a three-replica stream can be created (and it is removed again)."""
        try:
            servers = self.url.split(",")
            nc = await nats.connect(servers, connect_timeout=1, max_reconnect_attempts=0)
        except Exception:
            return False
        try:
            js = nc.jetstream(timeout=2.0)
            await js.add_stream(StreamConfig(name="probe", subjects=["probe"], num_replicas=3))
            await js.delete_stream("probe")
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.kill()
        process.wait(10)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)
