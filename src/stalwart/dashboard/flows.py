"""Who publishes to which topic and who consumes it, with the errors: the map's data.

Two grouped reads over the window, both starting from the index on
``messages.created_at`` (the deliveries narrowed by their message's time
too): messages per (publisher, topic), and deliveries per (publisher, topic,
consumer, state). Reply topics are per instance
(``sys.reply.<service>.<instance>``), so they are folded into ``sys.reply.*``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from stalwart.envelope import DeliveryState, utcnow
from stalwart.store import Store
from stalwart.store.schema import deliveries, messages
from stalwart.store.stats import delivered_since

__all__ = ["ERROR_STATES", "REPLY_PREFIX", "Flows", "flows", "topic_group"]

REPLY_PREFIX = "sys.reply."
ERROR_STATES = frozenset(
    {DeliveryState.FAILED, DeliveryState.DEAD, DeliveryState.REJECTED, DeliveryState.EXPIRED}
)

# (publisher, topic, consumer or "" for the publish side) -> (count, errors)
Flows = dict[tuple[str, str, str], tuple[int, int]]


def topic_group(topic: str) -> str:
    """Reply topics, one per instance, as one group; any other topic as itself."""
    return REPLY_PREFIX + "*" if topic.startswith(REPLY_PREFIX) else topic


async def flows(store: Store, window: timedelta, now: datetime | None = None) -> Flows:
    """Messages per publisher and topic, deliveries per consumer, over the last ``window``."""
    start = (now or utcnow()) - window
    published = (
        select(messages.c.sender_service, messages.c.topic, func.count())
        .where(messages.c.created_at >= start)
        .group_by(messages.c.sender_service, messages.c.topic)
    )
    delivered = (
        select(
            messages.c.sender_service,
            messages.c.topic,
            deliveries.c.service,
            deliveries.c.state,
            func.count(),
        )
        .join(deliveries, deliveries.c.message_id == messages.c.id)
        .where(messages.c.created_at >= start, delivered_since(start))
        .group_by(
            messages.c.sender_service, messages.c.topic, deliveries.c.service, deliveries.c.state
        )
    )
    out: Flows = {}

    def add(key: tuple[str, str, str], count: int, errors: int) -> None:
        old = out.get(key, (0, 0))
        out[key] = (old[0] + count, old[1] + errors)

    async with store.engine.connect() as conn:
        for sender, topic, n in await conn.execute(published):
            add((sender, topic_group(topic), ""), n, 0)
        for sender, topic, consumer, state, n in await conn.execute(delivered):
            errors = n if state in ERROR_STATES else 0
            add((sender, topic_group(topic), consumer), n, errors)
            add((sender, topic_group(topic), ""), 0, errors)
    return out
