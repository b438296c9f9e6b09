"""The ha part's tables in the store database (created by the store's migrations),
and how long ``stalwart store prune`` keeps their rows.

Times in ``ha_leases`` are seconds since the epoch *by the database's clock*
(``clock_timestamp()`` on PostgreSQL, ``julianday('now')`` on SQLite): no
holder's clock is ever trusted for expiry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

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
    delete,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stalwart.store.engine import db_now
from stalwart.store.schema import register

if TYPE_CHECKING:
    from stalwart.config import StoreSettings

__all__ = [
    "CHECKPOINTS_KEPT",
    "MONITOR_HISTORY",
    "checkpoints",
    "guard_transaction",
    "leases",
    "members",
    "metadata",
    "monitor_transitions",
    "monitors",
    "prune",
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

# How long `stalwart store prune` keeps what would otherwise grow for ever.
MONITOR_HISTORY: Final = 90 * 86400.0  # seconds of monitor transitions
CHECKPOINTS_KEPT: Final = 10  # newest checkpoints per role


async def prune(engine: AsyncEngine, settings: StoreSettings) -> dict[str, int]:
    """Forget monitor transitions older than :data:`MONITOR_HISTORY`, all but the
    newest :data:`CHECKPOINTS_KEPT` checkpoints of each role, and replicas not
    seen for ``forget_after``; rows deleted per table."""
    newer = checkpoints.alias("newer")
    newest = (
        select(func.max(newer.c.version))
        .where(newer.c.role == checkpoints.c.role)
        .scalar_subquery()
    )
    async with engine.begin() as conn:
        now = db_now(conn)
        statements = {
            "ha_monitor_transitions": delete(monitor_transitions).where(
                monitor_transitions.c.at < now - MONITOR_HISTORY
            ),
            "ha_checkpoints": delete(checkpoints).where(
                checkpoints.c.version <= newest - CHECKPOINTS_KEPT
            ),
            "ha_members": delete(members).where(members.c.seen_at < now - settings.forget_after),
        }
        return {name: (await conn.execute(s)).rowcount for name, s in statements.items()}


register("ha", metadata, prune=prune)

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
