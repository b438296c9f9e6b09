"""Waiting in tests until something holds, the one way every test does it.

A test that waits for a broker, a process or a store polls a probe until it
gives an acceptable value. When it never does, the failure names what was
awaited, for how long, and the last value the probe gave, so a timeout in CI
says what the system was doing instead of only that it was slow.

``until`` is for async tests (the probe may be a plain function or a coroutine
function); ``until_sync`` is for tests that drive subprocesses synchronously.
Both return the accepted value, so a probe can hand back what the test needs.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["until", "until_sync"]

T = TypeVar("T")

_SHOWN = 2000  # characters of the last value shown in a failure; long lists keep head and tail


def _timed_out(what: str, timeout: float, last: object) -> AssertionError:
    shown = repr(last)
    if len(shown) > _SHOWN:
        shown = f"{shown[: _SHOWN // 2]} ... {shown[-_SHOWN // 2 :]}"
    return AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {shown}")


def _check(timeout: float, interval: float) -> None:
    if timeout <= 0 or interval <= 0:
        raise ValueError(f"timeout ({timeout}) and interval ({interval}) must be positive seconds")


async def until(
    probe: Callable[[], T | Awaitable[T]],
    timeout: float,
    what: str,
    *,
    accept: Callable[[T], object] = bool,
    interval: float = 0.05,
) -> T:
    """Call ``probe`` every ``interval`` s until ``accept`` holds for its value; return that value.

    Raises AssertionError after ``timeout`` s, naming ``what`` and the last value seen.
    """
    _check(timeout, interval)
    deadline = time.monotonic() + timeout
    while True:
        value: Any = probe()
        if inspect.isawaitable(value):
            value = await value
        if accept(value):
            return value  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, value)
        await asyncio.sleep(interval)


def until_sync(
    probe: Callable[[], T],
    timeout: float,
    what: str,
    *,
    accept: Callable[[T], object] = bool,
    interval: float = 0.05,
) -> T:
    """``until`` for synchronous tests: blocks the thread between calls of ``probe``."""
    _check(timeout, interval)
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, value)
        time.sleep(interval)
