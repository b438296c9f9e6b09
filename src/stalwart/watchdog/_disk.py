"""The watchdog's disk loop: announce a filling disk before it is full.

A ``disk_low`` event (an alarm) when a data directory's file system drops
below its limits, repeated while it stays low, and ``disk_ok`` once it
recovers; the figures are in the event's evidence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from stalwart.events import WatchdogEvent, WatchdogKind
from stalwart.watchdog.probes import DiskProbe

__all__ = ["DISK_PROGRAM", "watch_disk"]

DISK_PROGRAM = "disk"  # the ``program`` of disk events: they concern no program
_log = logging.getLogger("stalwart.watchdog")


async def watch_disk(probe: DiskProbe, emit: Callable[[WatchdogEvent], None], name: str) -> None:
    """Check ``probe`` every ``interval`` seconds until cancelled; ``emit`` the changes."""
    settings = probe.settings
    announced: dict[str, float] = {}  # file system -> loop time of its last disk_low
    loop = asyncio.get_running_loop()
    while True:
        try:
            results = await asyncio.to_thread(probe.check)
        except OSError as exc:
            _log.warning("disk probe failed: %s", exc)
            results = []
        now = loop.time()
        for where, verdict in results:
            last = announced.get(where)
            if verdict is not None and (last is None or now - last >= settings.repeat):
                announced[where] = now
                emit(_event(WatchdogKind.DISK_LOW, verdict.reason, verdict.evidence, name))
            elif verdict is None and last is not None:
                del announced[where]
                reason = f"free space back above the limits on the disk of {where}"
                emit(_event(WatchdogKind.DISK_OK, reason, {}, name))
        await asyncio.sleep(settings.interval)


def _event(
    kind: WatchdogKind, reason: str, evidence: dict[str, object], name: str
) -> WatchdogEvent:
    return WatchdogEvent(
        event=kind,
        program=DISK_PROGRAM,
        reason=reason,
        evidence=evidence,
        watchdog=name,
        alarm=kind is WatchdogKind.DISK_LOW,
    )
