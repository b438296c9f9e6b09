"""Helpers for watchdog tests: an event recorder, test programs, waits on files."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stalwart.events import WatchdogEvent
from stalwart.watchdog import ProgramSettings

PY = sys.executable


class Recorder:
    """Collects events and lets a test wait for one that matches."""

    def __init__(self) -> None:
        self.events: list[WatchdogEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: WatchdogEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: str, program: str | None = None) -> list[WatchdogEvent]:
        return [
            e for e in self.events if e.event == kind and (program is None or e.program == program)
        ]

    async def wait(
        self, predicate: Callable[[WatchdogEvent], bool], timeout: float = 10.0
    ) -> WatchdogEvent:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [(e.event.value, e.program, e.instance, e.reason) for e in self.events]
                raise AssertionError(f"no matching event within {timeout} s; saw {seen}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.5))
            except TimeoutError:
                continue

    async def wait_kind(
        self, kind: str, program: str | None = None, count: int = 1, timeout: float = 10.0
    ) -> list[WatchdogEvent]:
        """Wait until ``count`` events of ``kind`` were seen; returns all of them."""
        await self.wait(lambda e: len(self.of(kind, program)) >= count, timeout=timeout)
        return self.of(kind, program)


BEAT = """
import os, socket
_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def beat(progress=None):
    fields = [os.environ["STALWART_PROGRAM"], os.environ["STALWART_INSTANCE"]]
    if progress is not None:
        fields.append(str(progress))
    _sock.sendto(" ".join(fields).encode(), os.environ["STALWART_WATCHDOG_SOCKET"])
"""


async def wait_for_path(path: Path, timeout: float = 10.0) -> None:
    """Poll for a file a child process creates (its way of saying it is ready)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(path.exists):
        if loop.time() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        await asyncio.sleep(0.02)


def script(tmp_path: Path, name: str, body: str) -> list[str]:
    """Write a small Python program to tmp_path; returns its command line."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return [PY, str(path)]


def program(name: str, command: list[str], **fields: Any) -> ProgramSettings:
    defaults: dict[str, Any] = {
        "check_interval": 0.1,
        "stop_grace": 1.0,
        "backoff": {"initial": 0.05, "max": 0.5, "jitter": 0.1, "reset_after": 30.0},
    }
    return ProgramSettings.model_validate({"name": name, "command": command, **defaults, **fields})
