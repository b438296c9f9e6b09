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
from waiting import until

PY = sys.executable


class Recorder:
    """Collects events and lets a test wait for one that matches."""

    def __init__(self) -> None:
        self.events: list[WatchdogEvent] = []

    def __call__(self, event: WatchdogEvent) -> None:
        self.events.append(event)

    def of(self, kind: str, program: str | None = None) -> list[WatchdogEvent]:
        return [
            e for e in self.events if e.event == kind and (program is None or e.program == program)
        ]

    async def wait(
        self, predicate: Callable[[WatchdogEvent], bool], timeout: float = 10.0
    ) -> WatchdogEvent:
        seen = await until(
            lambda: list(self.events),
            timeout,
            "a matching watchdog event",
            accept=lambda events: any(map(predicate, events)),
            interval=0.02,
        )
        return next(event for event in seen if predicate(event))

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
    await until(lambda: asyncio.to_thread(path.exists), timeout, f"{path} to appear", interval=0.02)


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
