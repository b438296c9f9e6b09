"""Queues and dead letters from the bus's management API, as dashboard models."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from stalwart.bus import DeadLetter, Transport
from stalwart.dashboard.models import DeadLetterItem, QueueInfo

__all__ = ["dead_letter_items", "queue_infos", "raw_preview"]

_PREVIEW = 4096


def raw_preview(raw: bytes) -> str:
    """The first bytes of an undecodable message, as text (shown escaped)."""
    text = raw[:_PREVIEW].decode("utf-8", errors="replace")
    return text + ("…" if len(raw) > _PREVIEW else "")


async def queue_infos(transport: Transport, timeout: float = 5.0) -> list[QueueInfo]:
    """Depth and dead-letter count of every declared queue."""
    async with asyncio.timeout(timeout):
        names = sorted(await transport.queues())
        stats = await asyncio.gather(*(transport.queue_stats(n) for n in names))
    return [
        QueueInfo(name=s.name, ready=s.ready, inflight=s.inflight, delayed=s.delayed, dead=s.dead)
        for s in stats
    ]


def _item(letter: DeadLetter) -> DeadLetterItem:
    return DeadLetterItem(
        queue=letter.queue,
        key=letter.key,
        reason=letter.reason,
        attempts=letter.attempts,
        died_at=letter.died_at,
        envelope=letter.envelope.redacted() if letter.envelope is not None else None,
        raw=None if letter.envelope is not None else raw_preview(letter.raw),
    )


async def dead_letter_items(
    transport: Transport, queues: Sequence[str], limit: int = 100, timeout: float = 5.0
) -> list[DeadLetterItem]:
    """Dead letters of ``queues``, newest first, at most ``limit`` per queue."""
    async with asyncio.timeout(timeout):
        found = await asyncio.gather(*(transport.dead_letters(q, limit=limit) for q in queues))
    items = [_item(letter) for letters in found for letter in letters]
    return sorted(items, key=lambda i: i.died_at, reverse=True)
