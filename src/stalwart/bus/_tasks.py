"""Stopping owned background tasks reliably, shared by the transports."""

from __future__ import annotations

import asyncio
import logging

__all__ = ["cancel_and_wait"]

_log = logging.getLogger("stalwart.bus")


async def cancel_and_wait(task: asyncio.Task[None], attempts: int = 50) -> None:
    """Cancel ``task`` and wait for it to end, cancelling again if a library
    swallowed the cancellation (aiormq can turn one into a connection error)."""
    for _ in range(attempts):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=0.2)
    if task.done() and not task.cancelled() and task.exception() is not None:
        _log.error("background task %s failed: %r", task.get_name(), task.exception())
