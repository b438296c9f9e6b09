"""The prescribed recovery strategy for a failed critical service.

Step 1, repair: run the monitor's ``repair`` command (if any) and re-probe
the active URL until it answers or ``repair_timeout`` passes (with no command
this is "reconnect": the service may come back by itself). Step 2, fail
over: probe the other URLs in order after the active one and switch to the
first that answers. Each step is bounded in time; the caller turns the
outcome into state transitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from stalwart.ha.config import MonitorSettings
from stalwart.ha.probes import ProbeResult, probe

__all__ = ["Outcome", "ProbeFn", "default_probe", "fail_over", "recover", "repair"]

_log = logging.getLogger("stalwart.ha.health")
ProbeFn = Callable[[MonitorSettings, str], Awaitable[ProbeResult]]


async def default_probe(monitor: MonitorSettings, url: str) -> ProbeResult:
    """Probe ``url`` the way ``monitor`` says (kind, timeout, expected status)."""
    return await probe(
        monitor.kind, url, timeout=monitor.timeout, expect_status=monitor.expect_status
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where recovery ended: healthy on ``url`` (maybe a backup), or not."""

    ok: bool
    url: str
    reason: str
    failed_over: bool = False


async def _run_repair(argv: list[str], limit: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with asyncio.timeout(limit):
            code = await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return f"repair command {argv[0]} killed after {limit:.0f}s"
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return f"repair command {argv[0]} exited {code}"


async def repair(monitor: MonitorSettings, url: str, check: ProbeFn) -> Outcome:
    """Run the repair command, then re-probe ``url`` until healthy or out of time."""
    deadline = time.monotonic() + monitor.repair_timeout
    done = "no repair command: waited for reconnection"
    if monitor.repair:
        try:
            done = await _run_repair(monitor.repair, monitor.repair_timeout)
        except OSError as exc:
            done = f"repair command {monitor.repair[0]} could not run: {exc}"
    _log.info("monitor=%s %s", monitor.name, done)
    pause = min(monitor.interval, 1.0)
    last = ""
    while True:
        result = await check(monitor, url)
        if result.ok:
            return Outcome(True, url, f"repaired ({done}): {result.detail}")
        last = result.detail
        left = deadline - time.monotonic()
        if left <= 0:
            return Outcome(
                False, url, f"not repaired in {monitor.repair_timeout:.0f}s ({done}): {last}"
            )
        await asyncio.sleep(min(pause, left))


async def fail_over(monitor: MonitorSettings, url: str, check: ProbeFn) -> Outcome:
    """Switch to the first other URL (in order after ``url``) that answers."""
    urls = monitor.urls
    start = urls.index(url) + 1 if url in urls else 0
    candidates = [u for u in urls[start:] + urls[:start] if u != url]
    if not monitor.failover or not candidates:
        return Outcome(False, url, "no backup to fail over to")
    tried: list[str] = []
    for candidate in candidates:
        result = await check(monitor, candidate)
        if result.ok:
            return Outcome(True, candidate, f"failed over: {result.detail}", failed_over=True)
        tried.append(result.detail)
    return Outcome(False, url, "every backup failed: " + "; ".join(tried))


async def recover(monitor: MonitorSettings, url: str, check: ProbeFn) -> Outcome:
    """Repair, then fail over: the whole prescribed strategy."""
    repaired = await repair(monitor, url, check)
    if repaired.ok:
        return repaired
    switched = await fail_over(monitor, url, check)
    if switched.ok:
        return switched
    return Outcome(False, url, f"{repaired.reason}; {switched.reason}")
