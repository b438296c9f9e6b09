"""Starting a long-lived part while the bus or the store is away.

A supervised part that exited because the broker or the database was down
at its start would be restarted into the same outage, a few times within a
minute, and then given up as ``fatal`` by its watchdog: one broker restart
would leave a site's every service down until someone came. So the parts
that run for good (``stalwart run``, ``stalwart store persist``) wait out such an
outage at start, saying so at each try, for up to ``STARTUP_WAIT`` seconds;
a URL that is simply wrong still ends in its error after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from stalwart.backoff import Backoff
from stalwart.errors import BrokerUnavailable, StoreUnavailable

__all__ = ["STARTUP_WAIT", "start_when_reachable"]

STARTUP_WAIT: Final = 300.0  # seconds a part waits for its bus and store at start

_log = logging.getLogger("stalwart.startup")


async def start_when_reachable(
    start: Callable[[], Awaitable[object]],
    what: str,
    *,
    stop: asyncio.Event | None = None,
    wait: float = STARTUP_WAIT,
    pace: Backoff | None = None,
) -> bool:
    """``await start()``, again after a pause while it finds the bus or the store down.

    True once it started; False when ``stop`` was set while waiting. Raises the
    last BrokerUnavailable or StoreUnavailable once ``wait`` seconds have
    passed, and any other error at once (a wrong configuration is not an outage).
    """
    pace = pace or Backoff(0.5, 15.0)
    deadline = time.monotonic() + wait
    while True:
        try:
            await start()
            return True
        except (BrokerUnavailable, StoreUnavailable) as exc:
            delay = pace.next()
            if time.monotonic() + delay > deadline:
                raise
            _log.warning("%s cannot start yet: %s; trying again in %.1fs", what, exc, delay)
        if stop is None:
            await asyncio.sleep(delay)
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
        if stop.is_set():
            return False
