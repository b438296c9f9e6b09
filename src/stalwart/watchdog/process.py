"""Spawning programs in their own session, and stopping whole process trees.

Each program leads its own session and process group, so one ``killpg``
reaches everything it forked (unless a descendant made its own session; the
psutil tree snapshot covers those). Direct children get ``PR_SET_PDEATHSIG``
so they die with the watchdog; the guardian (``_guard``) kills the groups
when the watchdog dies, so grandchildren do not outlive it either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import psutil

from stalwart.watchdog import _procfs
from stalwart.watchdog.config import ProgramSettings

__all__ = ["Child", "ExitStatus", "become_subreaper", "reap_orphans", "spawn", "stop_tree"]

_log = logging.getLogger("stalwart.watchdog.process")
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved in the parent (never load libraries after fork)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func: Callable[..., int] = libc.prctl
        return func
    except (OSError, AttributeError):
        return None


def become_subreaper() -> bool:
    """Adopt orphaned descendants so that they can be reaped (no zombies)."""
    prctl = _prctl()
    return prctl is not None and prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _die_with_parent(parent: int) -> Callable[[], None]:
    prctl = _prctl()

    def preexec() -> None:  # runs in the child between fork and exec
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the watchdog died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a process ended: ``code`` for a normal exit, ``signal`` when killed by one."""

    code: int | None
    signal: str | None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        if returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            return cls(code=None, signal=name)
        return cls(code=returncode, signal=None)

    @property
    def clean(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        return f"killed by {self.signal}" if self.signal else f"exit code {self.code}"


class Child:
    """One running program instance: its process, group and exit future."""

    def __init__(self, proc: asyncio.subprocess.Process, started: float) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.pgid = proc.pid
        self.started = started
        self.exited: asyncio.Task[ExitStatus] = asyncio.ensure_future(self._wait())
        self.exited_at: float | None = None

    async def _wait(self) -> ExitStatus:
        code = await self.proc.wait()
        self.exited_at = time.monotonic()
        return ExitStatus.from_returncode(code)

    @property
    def running(self) -> bool:
        return not self.exited.done()

    def tree(self) -> list[psutil.Process]:
        """The live descendants (not the child itself)."""
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []


async def spawn(program: ProgramSettings, instance: int, extra_env: Mapping[str, str]) -> Child:
    """Start one instance of ``program`` in a new session; raises OSError if it cannot."""
    env = {**os.environ, **program.env, **extra_env}
    out: IO[Any] | int | None = None
    if program.output is not None:
        program.output.parent.mkdir(parents=True, exist_ok=True)
        out = program.output.open("ab")
    try:
        proc = await asyncio.create_subprocess_exec(
            *program.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT if out is not None else None,
            env=env,
            cwd=program.cwd,
            user=program.user,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
    finally:
        if out is not None and not isinstance(out, int):
            out.close()
    _log.debug("spawned program=%s instance=%d pid=%d", program.name, instance, proc.pid)
    return Child(proc, time.monotonic())


def _signal_all(child: Child, procs: list[psutil.Process], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pgid, sig)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    live = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                live.append(proc)
        except psutil.Error:
            continue
    return live


async def _wait_until(done: Callable[[], bool], timeout: float) -> bool:
    """Poll ``done`` (process state has no event to wait on) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)


async def stop_tree(child: Child, sig: int, grace: float) -> bool:
    """Signal the whole tree, wait ``grace``, then SIGKILL what is left.

    Returns True when SIGKILL was needed. Returns once the child is reaped and
    no descendant is alive (bounded: a few seconds after SIGKILL at most).
    """
    procs = child.tree()
    if child.running or procs:  # a dead leader's leftovers get the stop signal too
        _signal_all(child, procs, sig)
    killed = False
    if not await _wait_until(lambda: not child.running and not _alive(procs), grace):
        killed = True
        procs = _alive(procs) + child.tree()
        _signal_all(child, procs, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(child.exited), timeout=5.0)
    await _wait_until(lambda: not _alive(procs), 5.0)
    reap_orphans({child.pgid})
    return killed


def reap_orphans(pgids: set[int]) -> int:
    """Reap zombies adopted from our programs' groups (we are their subreaper).

    Group leaders are skipped: asyncio's child watcher reaps those.
    """
    if _procfs.available():
        kids = [pid for pid in _procfs.children(os.getpid()) if pid not in pgids]
        zombies = [pid for pid in kids if (_procfs.stat(pid) or (0, 0, 0, False))[3]]
    else:
        try:
            procs = psutil.Process().children()
        except psutil.Error:
            return 0
        zombies = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.pid not in pgids and proc.status() == psutil.STATUS_ZOMBIE:
                    zombies.append(proc.pid)
    reaped = 0
    for pid in zombies:
        try:
            if os.getpgid(pid) in pgids and os.waitpid(pid, os.WNOHANG)[0]:
                reaped += 1
        except OSError:
            continue
    return reaped
