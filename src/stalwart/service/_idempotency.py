"""A per-service record of processed message ids, shared by its instances.

At-least-once delivery plus this record gives effectively-once effects: an
instance checks the id before running a handler and records it after the
handler succeeded, before the ack. It lives in the store database so that
instances on different hosts share it (PostgreSQL) or those on one host do
(SQLite).
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.envelope import utcnow
from stalwart.store.engine import create_missing, make_engine

__all__ = ["ProcessedIds"]

_metadata = sa.MetaData()
_processed = sa.Table(
    "service_processed",
    _metadata,
    sa.Column("service", sa.String(200), primary_key=True),
    sa.Column("message_id", sa.String(64), primary_key=True),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


class ProcessedIds:
    """Which message ids a service has processed."""

    def __init__(self, store_url: str, service: str) -> None:
        self._engine: AsyncEngine = make_engine(store_url)
        self._service = service

    async def open(self) -> None:
        """Create the table if needed; safe when instances start at the same moment."""
        async with self._engine.begin() as conn:
            await create_missing(conn, _metadata)

    async def close(self) -> None:
        await self._engine.dispose()

    async def seen(self, message_id: str) -> bool:
        query = sa.select(sa.literal(1)).where(
            _processed.c.service == self._service, _processed.c.message_id == message_id
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def remember(self, message_id: str) -> None:
        row = {"service": self._service, "message_id": message_id, "processed_at": utcnow()}
        insert = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        statement = insert(_processed).values(row).on_conflict_do_nothing()
        async with self._engine.begin() as conn:
            await conn.execute(statement)

    async def forget_older_than(self, age: timedelta) -> int:
        """Drop records older than ``age`` (older than any possible redelivery)."""
        statement = _processed.delete().where(
            _processed.c.service == self._service, _processed.c.processed_at < utcnow() - age
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(statement)).rowcount
