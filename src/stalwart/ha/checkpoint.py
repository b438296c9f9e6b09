"""Checkpoints of an HA service's state, versioned and fenced by the lease token.

Only the current holder of a role can write a checkpoint: the write runs
inside :func:`~stalwart.ha.lease.fenced_write`, so a paused or partitioned
former holder gets :class:`~stalwart.errors.FencedOut` instead of overwriting
its successor's state. Versions grow per role; the newest ``keep`` are kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stalwart.errors import StoreUnavailable
from stalwart.ha._schema import CHECKPOINTS_KEPT, checkpoints
from stalwart.ha.lease import fenced_write
from stalwart.store.engine import db_now

__all__ = ["Checkpoint", "latest_checkpoint", "save_checkpoint"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One saved state of a role: ``version`` grows, ``token`` is the writer's lease."""

    role: str
    version: int
    token: int
    holder: str
    created_at: float
    state: Any


async def save_checkpoint(
    engine: AsyncEngine,
    role: str,
    token: int,
    state: Any,
    *,
    holder: str = "",
    keep: int = CHECKPOINTS_KEPT,
    effect: Callable[[AsyncConnection], Awaitable[Any]] | None = None,
) -> int:
    """Store ``state`` (JSON-serialisable) as the newest checkpoint; returns its version.

    ``effect(conn)``, when given, runs in the same fenced transaction first, so
    an effect and the state that accounts for it commit together or not at all.
    Raises FencedOut if ``token`` is no longer the role's current lease.
    """
    if keep < 1:
        raise ValueError("keep must be >= 1")

    async def write(conn: AsyncConnection) -> int:
        if effect is not None:
            await effect(conn)
        last = (
            await conn.execute(
                select(func.coalesce(func.max(checkpoints.c.version), 0)).where(
                    checkpoints.c.role == role
                )
            )
        ).scalar_one()
        version = int(last) + 1
        await conn.execute(
            insert(checkpoints).values(
                role=role,
                version=version,
                token=token,
                holder=holder,
                created_at=db_now(conn),
                state=state,
            )
        )
        await conn.execute(
            delete(checkpoints).where(
                checkpoints.c.role == role, checkpoints.c.version <= version - keep
            )
        )
        return version

    return await fenced_write(engine, role, token, write)


async def latest_checkpoint(engine: AsyncEngine, role: str) -> Checkpoint | None:
    """The newest checkpoint of ``role``, or None if it never saved one."""
    query = (
        select(checkpoints)
        .where(checkpoints.c.role == role)
        .order_by(checkpoints.c.version.desc())
        .limit(1)
    )
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(query)).first()
    except (DBAPIError, OSError) as exc:
        raise StoreUnavailable(
            f"cannot read checkpoints of role {role!r}: {exc}; check the store database"
        ) from exc
    if row is None:
        return None
    return Checkpoint(
        role=row.role,
        version=int(row.version),
        token=int(row.token),
        holder=row.holder,
        created_at=float(row.created_at),
        state=row.state,
    )
