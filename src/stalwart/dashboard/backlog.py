"""How old the oldest unfinished delivery of each service is, by index seeks only.

For each (service, state) the count table says is not empty among the
unfinished states, one ``min(message_created_at)`` over the index
``ix_deliveries_service_state_time``: a seek per pair, never a scan, however
large the store or the backlog. Each ``min`` stands alone, without ``GROUP
BY``: only then does PostgreSQL read it as the first index entry (grouped, it
read every failed delivery of the service, 140 ms for 4,000 of them).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, literal, select, union_all

from stalwart.envelope import DeliveryState
from stalwart.store import Store
from stalwart.store.schema import deliveries, delivery_state_counts

__all__ = ["PENDING_STATES", "oldest_pending"]

PENDING_STATES = (DeliveryState.RECEIVED, DeliveryState.FAILED)


async def oldest_pending(store: Store) -> dict[str, datetime]:
    """Each service with unfinished deliveries -> creation time of its oldest one."""
    counts = delivery_state_counts.c
    pairs_query = select(counts.service, counts.state).where(
        counts.n > 0, counts.state.in_([s.value for s in PENDING_STATES])
    )
    async with store.engine.connect() as conn:
        pairs = list(await conn.execute(pairs_query))
        if not pairs:
            return {}
        seeks = [
            select(
                literal(service).label("service"),
                func.min(deliveries.c.message_created_at).label("oldest"),
            ).where(
                deliveries.c.service == service,
                deliveries.c.state == state,
                deliveries.c.message_created_at.is_not(None),
            )
            for service, state in pairs
        ]
        rows = await conn.execute(union_all(*seeks) if len(seeks) > 1 else seeks[0])
        oldest: dict[str, datetime] = {}
        for service, when in rows:
            if when is not None and (service not in oldest or when < oldest[service]):
                oldest[service] = when
    return oldest
