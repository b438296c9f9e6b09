"""The ha part's tables in the store database, created by the store's migrations.

Times in ``ha_leases`` are seconds since the epoch *by the database's clock*
(``clock_timestamp()`` on PostgreSQL, ``julianday('now')`` on SQLite): no
holder's clock is ever trusted for expiry.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from stalwart.store.schema import register

__all__ = [
    "checkpoints",
    "guard_transaction",
    "leases",
    "members",
    "metadata",
    "monitor_transitions",
    "monitors",
]

metadata = MetaData()

leases = Table(
    "ha_leases",
    metadata,
    Column("role", String(200), primary_key=True),
    Column("holder", String(255), nullable=True),
    Column("token", BigInteger, nullable=False, default=0),
    Column("acquired_at", Double, nullable=False, default=0.0),
    Column("renewed_at", Double, nullable=False, default=0.0),
    Column("expires_at", Double, nullable=False, default=0.0),
    Column("stepdown_requested", Boolean, nullable=False, default=False),
)

members = Table(
    "ha_members",
    metadata,
    Column("role", String(200), primary_key=True),
    Column("holder", String(255), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("ttl", Double, nullable=False),
    Column("seen_at", Double, nullable=False),
)

checkpoints = Table(
    "ha_checkpoints",
    metadata,
    Column("role", String(200), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("token", BigInteger, nullable=False),
    Column("holder", String(255), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("state", JSON, nullable=True),
)

monitors = Table(
    "ha_monitors",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("state", String(20), nullable=False),
    Column("active_url", Text, nullable=False),
    Column("urls", JSON, nullable=False),
    Column("since", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("detail", Text, nullable=False, default=""),
)

monitor_transitions = Table(
    "ha_monitor_transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("monitor", String(100), nullable=False, index=True),
    Column("from_state", String(20), nullable=False),
    Column("to_state", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("at", Double, nullable=False),
)

register("ha", metadata)

_LOCK_TIMEOUT_MS = 500
_IDLE_TIMEOUT_MS = 1000


async def guard_transaction(conn: AsyncConnection) -> None:
    """Bound how long an HA transaction may wait for, or sit on, the lease row lock.

    On PostgreSQL a holder paused (SIGSTOP) inside a transaction would keep
    the row locked and block every standby; the server ends such a session
    after a second idle and a waiter gives up after half a second.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text(
                "SELECT set_config('lock_timeout', :lock, true), "
                "set_config('idle_in_transaction_session_timeout', :idle, true)"
            ),
            {"lock": f"{_LOCK_TIMEOUT_MS}ms", "idle": f"{_IDLE_TIMEOUT_MS}ms"},
        )
