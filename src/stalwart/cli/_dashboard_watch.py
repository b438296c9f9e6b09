"""Where the dashboard that ``stalwart up`` supervises listens, or why it does not.

The dashboard runs as a watchdog program; once it listens it writes the URL
it bound to a file in the home directory. ``stalwart up`` prints that URL in
its banner, not the address it asked for (which may belong to another
program), or the watchdog's reason when the dashboard stopped for good.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from stalwart.events import WatchdogEvent, WatchdogKind

__all__ = ["DashboardWatch", "url_file"]

PROGRAM = "dashboard"


def url_file(home: Path) -> Path:
    """The file the supervised dashboard writes its URL to."""
    return home / "dashboard.url"


class DashboardWatch:
    """Listens to the watchdog's events and to the URL file of one ``up`` run."""

    def __init__(self, home: Path) -> None:
        self._file = url_file(home)
        self._file.unlink(missing_ok=True)  # a previous run's address is not this one's
        self._failure: str | None = None

    def on_event(self, event: WatchdogEvent) -> None:
        if event.program == PROGRAM and event.event == WatchdogKind.FATAL:
            self._failure = (
                f"exit code {event.evidence.get('exit_code')}, a configuration error: see "
                "its error above, fix it and run `stalwart up` again"
                if event.evidence.get("config_error")
                else event.reason
            )

    async def line(self, timeout: float, stop: asyncio.Event) -> str:
        """The banner's dashboard line, once the dashboard listens or has failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop.is_set():
            if self._file.exists():
                return f"dashboard  {self._file.read_text(encoding='utf-8').strip()}"
            if self._failure is not None:
                return f"dashboard  failed ({self._failure})"
            await asyncio.sleep(0.1)
        return f"dashboard  not listening after {timeout:.0f}s: see `stalwart watchdog status`"
