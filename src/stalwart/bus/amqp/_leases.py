"""The lease deadlines of one consumer's deliveries, kept on a single timer.

A timer per delivery (``loop.call_later`` on hand-out, cancelled on settle)
costs a timer handle, a heap push and, later, popping the cancelled handle,
for every message. Deadlines here are plain floats in a dict; one timer is
armed for the earliest, and when it fires it releases what is due and arms
itself for the next. Handing out and settling are a dict store and a delete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Leases"]

_K = TypeVar("_K", bound=Hashable)


class Leases(Generic[_K]):
    """Items held until a deadline; ``on_expiry(item)`` runs for each one not dropped in time."""

    def __init__(self, on_expiry: Callable[[_K], None]) -> None:
        self._on_expiry = on_expiry
        self._deadlines: dict[_K, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def hold(self, item: _K, seconds: float) -> None:
        """Start or renew ``item``'s lease: it expires ``seconds`` from now."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self._deadlines[item] = deadline
        if self._timer is None or deadline < self._timer.when():
            self._arm(loop, deadline)

    def drop(self, item: _K) -> None:
        """End ``item``'s lease (settled): it will not expire."""
        self._deadlines.pop(item, None)

    def clear(self) -> None:
        """Drop every lease and stop the timer."""
        self._deadlines.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = [item for item, deadline in self._deadlines.items() if deadline <= now]
        for item in due:
            del self._deadlines[item]
        if self._deadlines:
            self._arm(loop, min(self._deadlines.values()))
        for item in due:
            self._on_expiry(item)
