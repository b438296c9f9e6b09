"""start_when_reachable: a part waits out a bus or store outage at start, not a mistake."""

from __future__ import annotations

import asyncio

import pytest

from stalwart.backoff import Backoff
from stalwart.errors import BrokerUnavailable, ConfigError, StoreUnavailable
from stalwart.startup import start_when_reachable


class _Start:
    """Raises ``failures`` in turn, then starts."""

    def __init__(self, *failures: Exception) -> None:
        self._failures = list(failures)
        self.tries = 0

    async def __call__(self) -> None:
        self.tries += 1
        if self._failures:
            raise self._failures.pop(0)


_QUICK = Backoff(0.001, 0.001)


async def test_an_outage_of_the_bus_or_the_store_is_waited_out() -> None:
    start = _Start(BrokerUnavailable("bus down"), StoreUnavailable("store down"))
    assert await start_when_reachable(start, "qa", pace=_QUICK)
    assert start.tries == 3


async def test_a_wrong_configuration_fails_at_once() -> None:
    start = _Start(ConfigError("bad url"))
    with pytest.raises(ConfigError):
        await start_when_reachable(start, "qa", pace=_QUICK)
    assert start.tries == 1


async def test_an_outage_longer_than_the_wait_ends_in_its_error() -> None:
    start = _Start(*[BrokerUnavailable(f"bus down {n}") for n in range(1000)])
    with pytest.raises(BrokerUnavailable, match="bus down"):
        await start_when_reachable(start, "qa", wait=0.05, pace=Backoff(0.01, 0.01))
    assert start.tries > 1


async def test_a_stop_while_waiting_ends_the_wait() -> None:
    stop = asyncio.Event()
    start = _Start(*[BrokerUnavailable("bus down") for _ in range(1000)])
    waiting = asyncio.create_task(
        start_when_reachable(start, "qa", stop=stop, pace=Backoff(5.0, 5.0))
    )
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(waiting, 2.0) is False
    assert start.tries == 1
