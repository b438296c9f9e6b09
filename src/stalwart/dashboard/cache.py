"""A tiny time-to-live cache with single flight for the store's aggregate queries.

Every open overview refreshes every few seconds; without a cache each viewer
would re-run the same aggregates (states, traffic, components). With it the
store answers once per ``ttl`` whatever the number of viewers, and callers
arriving while a query runs wait for that one instead of starting another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

__all__ = ["TtlCache"]

T = TypeVar("T")


class TtlCache:
    """Results of ``load()`` by key, reused for ``ttl`` seconds; failures are not kept."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, asyncio.Future[Any]]] = {}
        self.hits = 0
        self.misses = 0

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        if self.ttl <= 0:
            return await load()
        entry = self._entries.get(key)
        if entry is not None:
            expires, future = entry
            if not future.done() or expires > self._clock():
                self.hits += 1
                return cast(T, await asyncio.shield(future))
        self.misses += 1
        future = asyncio.get_running_loop().create_future()
        self._entries[key] = (float("inf"), future)
        try:
            value = await load()
        except BaseException as exc:
            self._entries.pop(key, None)
            future.set_exception(exc)
            future.exception()  # retrieved: waiters (if any) re-raise it themselves
            raise
        future.set_result(value)
        self._entries[key] = (self._clock() + self.ttl, future)
        return value
