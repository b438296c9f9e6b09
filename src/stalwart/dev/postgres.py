"""A throw-away PostgreSQL server (initdb + pg_ctl) on its own address, port and
directory: for fault tests and chaos campaigns, which may stop, restart and kill it.

The shared server on 5432 is never touched. PostgreSQL refuses to run as
root, so under root the cluster belongs to the ``postgres`` user. ``fsync``
is off: a kill of the server (``-m immediate``) keeps what the kernel holds,
which is all these uses need. ``close()`` stops it whatever its state and
deletes its files.
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
from pathlib import Path

from stalwart.dev.ports import free_port, port_open, wait_port

__all__ = ["PrivatePostgres"]


class PrivatePostgres:
    """One PostgreSQL cluster listening on ``host`` (default 127.0.0.1), trust auth."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not versions:
            raise FileNotFoundError("no PostgreSQL server under /usr/lib/postgresql/*/bin")
        self.bin = Path(versions[-1]).parent
        self.host = host
        self.root = Path(tempfile.mkdtemp(prefix="stalwart-chaos-pg-"))
        self.data = self.root / "data"
        self.port = free_port(host)
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> None:
        command = [*self._as, str(self.bin / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr.strip()}")

    def _ctl(self, action: str, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={self.host} "
            "-c fsync=off -c max_connections=200"
        )
        log = str(self.root / "server.log")
        self._run("pg_ctl", action, "-D", str(self.data), "-w", "-o", options, "-l", log, *args)

    def start(self) -> None:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
            if self.host != "127.0.0.1":  # initdb trusts loopback only; trust our subnet too
                with (self.data / "pg_hba.conf").open("a") as hba:
                    hba.write("host all all samenet trust\n")
        if not port_open(self.port, self.host):
            self._ctl("start")
        wait_port(self.port, 30.0, "private PostgreSQL", self.host)

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
