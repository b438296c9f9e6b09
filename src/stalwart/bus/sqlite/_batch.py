"""Requests of one event-loop turn, gathered into one writer operation.

A busy producer publishes, and a busy consumer acks, hundreds of times in a
burst. Handing each call to the writer thread separately costs a queue
hand-off, a future, a routing check and a wake-up per message; gathering the
calls made in the same loop turn costs one of each per burst. They still
commit in the group that follows, so nothing returns before it is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from stalwart.bus.sqlite._writer import Op

__all__ = ["TurnBatcher"]

_P = TypeVar("_P")
_R = TypeVar("_R")


class TurnBatcher(Generic[_P, _R]):
    """``add(payload)`` -> future of its result; one ``make_op(payloads)`` per loop turn.

    The operation ``make_op`` builds must return one result per payload, in order.
    """

    def __init__(
        self,
        submit: Callable[[Op[list[_R]]], asyncio.Future[list[_R]]],
        make_op: Callable[[list[_P]], Op[list[_R]]],
    ) -> None:
        self._submit = submit
        self._make_op = make_op
        self._pending: list[tuple[_P, asyncio.Future[_R]]] = []

    def add(self, payload: _P) -> asyncio.Future[_R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_R] = loop.create_future()
        self._pending.append((payload, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            done = self._submit(self._make_op([p for p, _ in batch]))
        except Exception as exc:  # e.g. TransportClosed: every caller hears it
            _fail(batch, exc)
            return
        done.add_done_callback(lambda outcome: _answer(batch, outcome))


def _fail(batch: Sequence[tuple[Any, asyncio.Future[Any]]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


def _answer(batch: Sequence[tuple[Any, asyncio.Future[Any]]], done: asyncio.Future[Any]) -> None:
    if done.cancelled():
        _fail(batch, asyncio.CancelledError())
        return
    exc = done.exception()
    if exc is not None:
        _fail(batch, exc)
        return
    for (_, future), result in zip(batch, done.result(), strict=True):
        if not future.done():
            future.set_result(result)
