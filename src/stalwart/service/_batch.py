"""Group commit: requests made while a batch is in flight share the next one.

Handlers running at the same time each need a small write in the store
(claim a message id, complete a claim). One transaction per request would
make them queue for the database's write lock (SQLite) or a connection
(PostgreSQL); gathering them costs one transaction per batch, and adds no
wait when the service is idle (a lone request is sent at once).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

_P = TypeVar("_P")
_R = TypeVar("_R")


class GroupCommit(Generic[_P, _R]):
    """``await batch(payload)`` -> its result; ``run(payloads)`` answers one per payload."""

    def __init__(
        self, run: Callable[[Sequence[_P]], Awaitable[Sequence[_R]]], max_batch: int = 256
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[_P, asyncio.Future[_R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, payload: _P) -> _R:
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._pending.append((payload, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="group-commit")
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: len(batch)]
            try:
                results = await self._run([payload for payload, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch + self._pending:
                    future.cancel()
                raise
            except Exception as exc:  # every caller of the batch hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
