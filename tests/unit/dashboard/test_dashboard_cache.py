"""The TTL cache: one query per TTL whatever the callers, failures not kept."""

from __future__ import annotations

import asyncio

import pytest

from stalwart.dashboard.cache import TtlCache


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_values_are_reused_until_they_expire() -> None:
    clock = Clock()
    cache = TtlCache(1.0, clock)
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert [await cache.get("k", load) for _ in range(3)] == [1, 1, 1]
    clock.now = 1.5
    assert await cache.get("k", load) == 2
    assert await cache.get("other", load) == 3


async def test_concurrent_callers_share_one_query() -> None:
    cache = TtlCache(1.0)
    started = 0
    gate = asyncio.Event()

    async def load() -> str:
        nonlocal started
        started += 1
        await gate.wait()
        return "v"

    waiting = [asyncio.create_task(cache.get("k", load)) for _ in range(5)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.gather(*waiting) == ["v"] * 5 and started == 1


async def test_failures_reach_every_waiter_and_are_not_cached() -> None:
    cache = TtlCache(10.0)
    attempts = 0

    async def load() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await asyncio.sleep(0.01)
            raise RuntimeError("database down")
        return "ok"

    first = asyncio.create_task(cache.get("k", load))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get("k", load))
    for task in (first, second):
        with pytest.raises(RuntimeError, match="database down"):
            await task
    assert await cache.get("k", load) == "ok" and attempts == 2


async def test_a_zero_ttl_never_caches() -> None:
    cache = TtlCache(0.0)
    values = iter(range(10))

    async def load() -> int:
        return next(values)

    assert [await cache.get("k", load) for _ in range(3)] == [0, 1, 2]
