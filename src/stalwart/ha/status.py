"""What the dashboard's HA panel and ``stalwart ha status`` show, in one query.

Times are the database's (epoch seconds), so "expires in" is measured on the
same clock that decides expiry. URLs are shown with passwords masked; the
full active URL of a monitored service is read with :func:`active_url`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.bus import redact_url
from stalwart.errors import StoreUnavailable
from stalwart.ha._schema import (
    checkpoints,
    leases,
    members,
    monitor_transitions,
    monitors,
)
from stalwart.store.engine import db_now

__all__ = [
    "CheckpointStatus",
    "HaStatus",
    "LeaseStatus",
    "MonitorStatus",
    "ReplicaStatus",
    "TransitionRecord",
    "active_url",
    "status",
]


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    role: str
    holder: str | None
    token: int
    live: bool
    expires_in: float
    acquired_at: float
    renewed_at: float
    stepdown_requested: bool


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """A process contending for or holding a role, seen within three lease times."""

    role: str
    holder: str
    state: str
    seen_ago: float


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    role: str
    version: int
    token: int
    holder: str
    created_at: float


@dataclass(frozen=True, slots=True)
class MonitorStatus:
    name: str
    kind: str
    state: str
    active_url: str
    urls: list[str]
    since: float
    updated_at: float
    detail: str


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    monitor: str
    from_state: str
    to_state: str
    reason: str
    url: str
    at: float


@dataclass(frozen=True, slots=True)
class HaStatus:
    """Leases, latest checkpoints, monitors and their recent transitions.

    ``checked_at`` is the database's time of the query (epoch seconds).
    """

    checked_at: float
    leases: list[LeaseStatus] = field(default_factory=list)
    replicas: list[ReplicaStatus] = field(default_factory=list)
    checkpoints: list[CheckpointStatus] = field(default_factory=list)
    monitors: list[MonitorStatus] = field(default_factory=list)
    transitions: list[TransitionRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the dashboard API and ``--json``)."""
        return asdict(self)


async def status(engine: AsyncEngine, *, transitions: int = 50) -> HaStatus:
    """Everything the HA panel shows; ``transitions``: how many recent ones."""
    newest = (
        select(checkpoints.c.role, func.max(checkpoints.c.version).label("version"))
        .group_by(checkpoints.c.role)
        .subquery()
    )
    try:
        async with engine.connect() as conn:
            now = float((await conn.execute(select(db_now(conn)))).scalar_one())
            lease_rows = (await conn.execute(select(leases).order_by(leases.c.role))).all()
            member_rows = (
                await conn.execute(
                    select(members)
                    .where(members.c.seen_at > now - 3 * members.c.ttl)
                    .order_by(members.c.role, members.c.holder)
                )
            ).all()
            cp_rows = (
                await conn.execute(
                    select(checkpoints)
                    .join(
                        newest,
                        (checkpoints.c.role == newest.c.role)
                        & (checkpoints.c.version == newest.c.version),
                    )
                    .order_by(checkpoints.c.role)
                )
            ).all()
            mon_rows = (await conn.execute(select(monitors).order_by(monitors.c.name))).all()
            tr_rows = (
                await conn.execute(
                    select(monitor_transitions)
                    .order_by(monitor_transitions.c.id.desc())
                    .limit(transitions)
                )
            ).all()
    except (DBAPIError, OSError) as exc:
        raise StoreUnavailable(f"cannot read HA status: {exc}; check store.url") from exc
    holders = {r.role: r.holder for r in lease_rows if r.expires_at > now}
    return HaStatus(
        checked_at=now,
        replicas=[
            ReplicaStatus(
                role=r.role,
                holder=r.holder,
                state="active" if holders.get(r.role) == r.holder else "standby",
                seen_ago=round(max(0.0, now - r.seen_at), 3),
            )
            for r in member_rows
        ],
        leases=[
            LeaseStatus(
                role=r.role,
                holder=r.holder,
                token=int(r.token),
                live=r.expires_at > now,
                expires_in=round(max(0.0, r.expires_at - now), 3),
                acquired_at=r.acquired_at,
                renewed_at=r.renewed_at,
                stepdown_requested=bool(r.stepdown_requested),
            )
            for r in lease_rows
        ],
        checkpoints=[
            CheckpointStatus(r.role, int(r.version), int(r.token), r.holder, r.created_at)
            for r in cp_rows
        ],
        monitors=[
            MonitorStatus(
                name=r.name,
                kind=r.kind,
                state=r.state,
                active_url=redact_url(r.active_url),
                urls=[redact_url(u) for u in r.urls],
                since=r.since,
                updated_at=r.updated_at,
                detail=r.detail,
            )
            for r in mon_rows
        ],
        transitions=[
            TransitionRecord(r.monitor, r.from_state, r.to_state, r.reason, redact_url(r.url), r.at)
            for r in tr_rows
        ],
    )


async def active_url(engine: AsyncEngine, monitor: str) -> str | None:
    """The URL clients of ``monitor`` should use now (after any failover), or None."""
    async with engine.connect() as conn:
        return (
            await conn.execute(select(monitors.c.active_url).where(monitors.c.name == monitor))
        ).scalar_one_or_none()
