"""The system under test: ``stalwart up --demo`` in a private home, as a child process.

The campaign drives it from outside, as an operator's bad day would: it
finds each supervised program's process from the watchdog's own table
(``watchdog_programs``, so renamed commands need no change here), the HA
leader from its lease, and restarts ``stalwart up`` itself when the fault was
to kill the watchdog (its programs die with it: they ask the kernel for
SIGKILL when their parent dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import psutil

from stalwart.dev.ports import free_port
from stalwart.errors import StalwartError
from stalwart.ha.status import status as ha_status
from stalwart.store.engine import make_engine
from stalwart.watchdog import program_states
from stalwart.watchdog.member import LIVE_STATES

__all__ = ["LEAKER", "DemoSystem", "SystemSpec"]

LEAKER: Final = "leaker"  # the program the leak fault makes grow
_LEAK_LIMIT: Final = "96MiB"
_HA_ROLE: Final = "service.dispatcher"
_UP_WITH_SHIM: Final = (
    "import sys; sys.executable = sys.argv.pop(1); from stalwart.cli import main; main()"
)


@dataclass(frozen=True)
class SystemSpec:
    """Where the demo keeps its files and which bus and store it uses."""

    root: Path
    bus_url: str | None = None  # default: the embedded SQLite bus in the home
    store_url: str | None = None  # default: SQLite in the home
    netns: Mapping[str, str] = field(default_factory=dict)  # site -> its namespace
    # How long the demo's retention keeps the store: at least the whole campaign,
    # or the checker finds the first faults' events and units already pruned.
    keep_store_for: float = 3600.0
    # How long it keeps delivered products, and how often it looks: at a unit a
    # second, each site's disk (128 MiB) holds about 7 minutes of them, and the
    # demo's default (10 minutes, looked at every minute) filled them all.
    keep_products_for: float = 120.0
    sweep_every: float = 30.0

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def config(self) -> Path:
        return self.root / "stalwart.toml"

    @property
    def store(self) -> str:
        return self.store_url or f"sqlite:///{self.home / 'store.db'}"

    @property
    def bus(self) -> str:
        return self.bus_url or f"sqlite:///{self.home / 'bus.db'}"

    def archive(self, site: str) -> Path:
        """Where the demo keeps the replicas that ``site`` holds."""
        return self.home / "demo" / "archive" / site

    def write_config(self) -> None:
        leaker = [sys.executable, "-m", "stalwart.chaos.leaker"]
        text = (
            f"home = {json.dumps(str(self.home))}\n"
            f"[bus]\nurl = {json.dumps(self.bus)}\n"
            f"outbox = {json.dumps(str(self.home / 'outbox.db'))}\n"
            f"[store]\nurl = {json.dumps(self.store)}\n"
            f'[demo]\nstore_retention = "{self.keep_store_for:.0f}s"\n'
            f'retention = "{self.keep_products_for:.0f}s"\nsweep = "{self.sweep_every:.0f}s"\n'
            # A port of its own: campaigns (and a `stalwart up`) may run side by side.
            f'[dashboard]\nbind = "127.0.0.1:{free_port()}"\n'
            f'[[watchdog.programs]]\nname = "{LEAKER}"\ncommand = {json.dumps(leaker)}\n'
            f'restart = "always"\nmax_memory = "{_LEAK_LIMIT}"\ncheck_interval = 0.5\n'
        )
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(text)

    @property
    def shim(self) -> Path:
        return self.root / "bin" / "python"

    def write_shim(self) -> None:
        """The interpreter ``stalwart up`` gives its programs: it starts each site's
        pipeline step and transfer service in the site's namespace, the rest as is."""
        cases = "".join(
            f"  *services:pipeline_{site}*|*services:transfer_{site}*) "
            f'exec ip netns exec {shlex.quote(ns)} {shlex.quote(sys.executable)} "$@" ;;\n'
            for site, ns in self.netns.items()
        )
        script = (
            f"#!/bin/sh\n# Written by stalwart chaos: programs of a site run in its namespace.\n"
            f'case "$*" in\n{cases}esac\nexec {shlex.quote(sys.executable)} "$@"\n'
        )
        self.shim.parent.mkdir(parents=True, exist_ok=True)
        self.shim.write_text(script)
        self.shim.chmod(0o755)


class DemoSystem:
    """One ``stalwart up --demo`` (the watchdog and its ~17 programs) and its store."""

    def __init__(self, spec: SystemSpec) -> None:
        self.spec = spec
        self.engine = make_engine(spec.store, pool_pre_ping=True)  # the store may restart
        self._up: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def watchdog_pid(self) -> int | None:
        up = self._up
        return up.pid if up is not None and up.poll() is None else None

    def watchdog_gone(self, timeout: float) -> bool:
        """Whether the watchdog has ended, waiting up to ``timeout`` seconds for it
        (a process SIGKILLed a moment ago may not have died yet)."""
        up = self._up
        if up is None:
            return True
        try:
            up.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def start(self) -> None:
        """Start ``stalwart up --demo`` (again, after the watchdog was killed). It feeds
        one unit, which shows the whole workflow runs; the campaign feeds the rest."""
        self.spec.home.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = open(self.spec.root / "up.log", "ab")  # noqa: SIM115 - kept open
        # With sites, `up` takes the shim for its interpreter (the stack's commands use
        # sys.executable), so that the programs of each site start in its namespace.
        command = (
            [sys.executable, "-c", _UP_WITH_SHIM, str(self.spec.shim)]
            if self.spec.netns
            else [sys.executable, "-m", "stalwart"]
        )
        command += [
            "up",
            "--demo",
            "--units",
            "1",
        ]
        # Every program reads the campaign's settings, not a stalwart.toml it happens to find.
        env = {**os.environ, "STALWART_CONFIG": str(self.spec.config)}
        self._up = subprocess.Popen(
            command,
            cwd=self.spec.root,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def programs(self) -> dict[str, int]:
        """Each live supervised program's pid (instance 0, or the first live one)."""
        watchdog = self.watchdog_pid
        try:
            states = await program_states(self.engine)  # by program and instance
        except Exception:  # the table is not there yet, or the store is restarting
            return {}
        found: dict[str, int] = {}
        for state in states:
            pid = state.pid
            if not pid or state.program in found or state.state not in LIVE_STATES:
                continue
            if _child_of(pid, watchdog):
                found[state.program] = pid
        return found

    async def pid(self, target: str, wait: float = 20.0) -> int | None:
        """The process behind ``target`` (a program, ``watchdog`` or ``ha-leader``),
        waiting up to ``wait`` seconds for it to be running."""
        deadline = time.monotonic() + wait
        while True:
            if target == "watchdog":
                found = self.watchdog_pid
            elif target == "ha-leader":
                found = await self._leader()
            else:
                found = (await self.programs()).get(target)
            if found is not None or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.5)

    async def _leader(self) -> int | None:
        try:
            leases = (await ha_status(self.engine, transitions=0)).leases
        except Exception:  # the store is restarting
            return None
        holder = next((x.holder for x in leases if x.role == _HA_ROLE and x.live), None)
        if not holder:
            return None
        try:  # holder: <host>-<pid>-<random>
            pid = int(holder.rsplit("-", 2)[1])
        except (IndexError, ValueError):
            return None
        return pid if _child_of(pid, self.watchdog_pid) else None

    async def wait_ready(self, expected: int, timeout: float) -> list[str]:
        """Wait until ``expected`` programs run; return their names, sorted."""
        deadline = time.monotonic() + timeout
        while True:
            running = await self.programs()
            if len(running) >= expected:
                return sorted(running)
            if self._up is not None and self._up.poll() is not None:
                raise StalwartError(
                    f"`stalwart up --demo` exited with status {self._up.returncode}; "
                    f"see {self.spec.root / 'up.log'}"
                )
            if time.monotonic() > deadline:
                raise StalwartError(
                    f"only {len(running)} of {expected} demo programs were running after "
                    f"{timeout:.0f}s ({', '.join(sorted(running)) or 'none'}); "
                    f"see {self.spec.root / 'up.log'}"
                )
            await asyncio.sleep(1.0)

    def stop(self, grace: float = 40.0) -> None:
        """Stop ``stalwart up`` gracefully (SIGTERM), else kill its whole tree."""
        up = self._up
        if up is None:
            return
        tree = _tree(up.pid)
        for proc in tree:  # a frozen process cannot stop gracefully
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(grace)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(up.pid, signal.SIGKILL)
        self._up = None

    async def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
        await self.engine.dispose()


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _child_of(pid: int, parent: int | None) -> bool:
    if parent is None:
        return False
    try:
        return psutil.Process(pid).ppid() == parent
    except psutil.Error:
        return False
