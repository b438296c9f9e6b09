"""Leases with fencing tokens, timed by the database's clock.

One row per role in ``ha_leases``. Acquiring is a single conditional UPDATE
(the lease must have expired *by the database's clock*) that increments the
role's fencing token, so tokens only grow. The holder also keeps a
conservative local deadline: the monotonic time at which it *sent* the
acquire/renew request, plus the lease, minus a small margin. Since the
database stamped the expiry later than that, the holder always stops acting
before anyone else can acquire, even when the database is unreachable or the
holder was paused (SIGSTOP) and resumed.

Writes that must not come from a stale holder go through :func:`fenced_write`,
which locks the lease row and checks the token inside the same transaction.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stalwart.errors import FencedOut, StoreUnavailable
from stalwart.ha._schema import guard_transaction, leases, members
from stalwart.store.engine import db_now, ensure_head, upsert

__all__ = ["Lease", "default_holder", "fenced_write", "request_step_down"]

T = TypeVar("T")

_MARGIN = 0.05  # fraction of the lease kept as a safety margin on the local deadline


def default_holder() -> str:
    """A holder id unique to this process: ``host-pid-random``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def _ensure_row(conn: AsyncConnection, role: str) -> None:
    values = {"role": role, "holder": None, "token": 0, "acquired_at": 0.0}
    values |= {"renewed_at": 0.0, "expires_at": 0.0, "stepdown_requested": False}
    await upsert(conn, leases, values, ["role"])


_FORGET_MEMBERS = 3600.0  # seconds after which a silent replica's row is removed


async def _seen(conn: AsyncConnection, role: str, holder: str, state: str, ttl: float) -> None:
    """Record that ``holder`` is alive as ``state`` (for status: who stands by)."""
    now = db_now(conn)
    values = {"state": state, "ttl": ttl, "seen_at": now}
    await upsert(
        conn, members, {"role": role, "holder": holder, **values}, ["role", "holder"], values
    )


def _store_error(exc: BaseException, role: str) -> StoreUnavailable:
    return StoreUnavailable(
        f"lease store unreachable for role {role!r}: {exc}; the holder stops acting at its "
        "deadline, check the store database"
    )


@asynccontextmanager
async def _guarded(engine: AsyncEngine, role: str) -> AsyncIterator[AsyncConnection]:
    """A transaction on the lease tables under :func:`guard_transaction`'s timeouts;
    a database or network failure anywhere in it is StoreUnavailable for ``role``."""
    try:
        async with engine.begin() as conn:
            await guard_transaction(conn)
            yield conn
    except (DBAPIError, OSError) as exc:
        raise _store_error(exc, role) from exc


class Lease:
    """A lease on ``role`` for this process; ``token`` is set while it is held.

    Methods raise :class:`StoreUnavailable` when the database cannot be
    reached; the local deadline still expires on time regardless.
    """

    def __init__(
        self, engine: AsyncEngine, role: str, *, ttl: float = 5.0, holder: str | None = None
    ) -> None:
        if ttl <= 0:
            raise ValueError("lease ttl must be > 0 seconds")
        self.engine = engine
        self.role = role
        self.ttl = ttl
        self.holder = holder or default_holder()
        self._token: int | None = None
        self._deadline = 0.0

    @property
    def token(self) -> int | None:
        """The fencing token of the current holding, or None when not held."""
        return self._token if self.held() else None

    def held(self) -> bool:
        """True while this process may act: held and before the local deadline."""
        return self._token is not None and time.monotonic() < self._deadline

    def remaining(self) -> float:
        """Seconds left before the local deadline (0 when not held)."""
        if self._token is None:
            return 0.0
        return max(0.0, self._deadline - time.monotonic())

    def forget(self) -> int | None:
        """Stop holding locally at once; returns the token that was held."""
        token, self._token, self._deadline = self._token, None, 0.0
        return token

    def _stamp(self, sent: float) -> None:
        self._deadline = sent + self.ttl * (1.0 - _MARGIN)

    async def acquire(self) -> bool:
        """Try once to take the role; True if this process now holds it.

        The first try migrates the store if behind: a replica keeps trying
        while the store is down, then needs its tables.
        """
        await ensure_head(self.engine)
        sent = time.monotonic()
        async with _guarded(self.engine, self.role) as conn:
            await _ensure_row(conn, self.role)
            now = db_now(conn)
            stmt = (
                update(leases)
                .where(leases.c.role == self.role, leases.c.expires_at <= now)
                .values(
                    holder=self.holder,
                    token=leases.c.token + 1,
                    acquired_at=now,
                    renewed_at=now,
                    expires_at=now + self.ttl,
                    stepdown_requested=False,
                )
                .returning(leases.c.token)
            )
            token = (await conn.execute(stmt)).scalar_one_or_none()
            state = "standby" if token is None else "active"
            await _seen(conn, self.role, self.holder, state, self.ttl)
            if token is not None:
                await conn.execute(
                    delete(members).where(
                        members.c.role == self.role,
                        members.c.seen_at < db_now(conn) - _FORGET_MEMBERS,
                    )
                )
        if token is None:
            return False
        self._token = int(token)
        self._stamp(sent)
        return True

    async def renew(self) -> bool:
        """Extend the holding; False (and no longer held) if it was lost or a step-down
        was requested."""
        token = self._token
        if token is None or not self.held():
            self.forget()
            return False
        sent = time.monotonic()
        async with _guarded(self.engine, self.role) as conn:
            now = db_now(conn)
            stmt = (
                update(leases)
                .where(
                    leases.c.role == self.role,
                    leases.c.token == token,
                    leases.c.holder == self.holder,
                    leases.c.expires_at > now,
                    leases.c.stepdown_requested.is_(False),
                )
                .values(renewed_at=now, expires_at=now + self.ttl)
            )
            renewed = (await conn.execute(stmt)).rowcount == 1
            if renewed:
                await _seen(conn, self.role, self.holder, "active", self.ttl)
        if renewed and self._token == token:
            self._stamp(sent)
            return True
        self.forget()
        return False

    async def release(self, token: int | None = None) -> bool:
        """Voluntary step-down: expire the lease now so a standby takes over at once.

        Call it only after this process stopped acting. ``token`` defaults to
        the current one; returns True if the database lease was released.
        """
        token = token if token is not None else self._token
        self.forget()
        if token is None:
            return False
        async with _guarded(self.engine, self.role) as conn:
            now = db_now(conn)
            stmt = (
                update(leases)
                .where(leases.c.role == self.role, leases.c.token == token)
                .where(leases.c.expires_at > now)
                .values(expires_at=now, stepdown_requested=False)
            )
            released = (await conn.execute(stmt)).rowcount == 1
            await _seen(conn, self.role, self.holder, "standby", self.ttl)
            return released

    async def fenced(self, write: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """:func:`fenced_write` with this holding's token; FencedOut if not held."""
        token = self.token
        if token is None:
            raise FencedOut(
                f"this process no longer holds role {self.role!r} (lease lost or past its "
                "deadline); it must stop acting and let the new holder continue"
            )
        return await fenced_write(self.engine, self.role, token, write)


async def fenced_write(
    engine: AsyncEngine,
    role: str,
    token: int,
    write: Callable[[AsyncConnection], Awaitable[T]],
) -> T:
    """Run ``write(conn)`` in one transaction only if ``token`` is still current.

    The lease row is locked first (``SELECT ... FOR UPDATE`` on PostgreSQL, a
    write lock on SQLite), so no acquisition can slip in between the check and
    the write. Raises :class:`FencedOut` when the token is stale or the lease
    has expired by the database's clock.
    """
    async with _guarded(engine, role) as conn:
        if conn.dialect.name != "postgresql":
            # The first write of a SQLite transaction takes the database's write lock.
            await conn.execute(
                update(leases).where(leases.c.role == role).values(token=leases.c.token)
            )
        query = select(leases.c.token, leases.c.holder, (leases.c.expires_at > db_now(conn)))
        query = query.where(leases.c.role == role)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is None or int(row[0]) != token or not row[2]:
            current = "none" if row is None else f"{row[0]} held by {row[1]}"
            state = "" if row is None or row[2] else " and expired"
            raise FencedOut(
                f"write refused for role {role!r}: token {token} is stale (current "
                f"{current}{state}); this holder lost its lease and must step down"
            )
        return await write(conn)


async def request_step_down(engine: AsyncEngine, role: str) -> int | None:
    """Ask the holder of ``role`` to step down; returns its token, None if unheld.

    The lease is not expired here: the holder sees the request on its next
    renewal, stops acting and releases it (or it expires if the holder is
    dead), so two holders never act at once.
    """
    async with _guarded(engine, role) as conn:
        stmt = (
            update(leases)
            .where(leases.c.role == role, leases.c.expires_at > db_now(conn))
            .values(stepdown_requested=True)
            .returning(leases.c.token)
        )
        token = (await conn.execute(stmt)).scalar_one_or_none()
    return None if token is None else int(token)
