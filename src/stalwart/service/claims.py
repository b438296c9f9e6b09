"""Claims on message ids: what makes an idempotent handler run once per service.

At-least-once delivery hands the same message to a service more than once
(a redelivery after a crash, the same envelope published twice, an outbox
re-send). Before an idempotent handler runs, its instance *claims* the id in
the store: one row per (service, message id) holding the claimer and a lease
timed by the database's clock. Only the claimer runs the handler; a second
copy waits until the claim is done (then it is a duplicate), released (the
first run failed: it takes over) or expired (the claimer died: it takes
over). The claim is completed in the same transaction as the handler's store
effects (:meth:`Claims.complete` inside ``ctx.transaction()``), and a
completion is fenced by the claimer: an instance whose claim was taken over
cannot commit, so the effect commits once.

Every method raises :class:`~stalwart.errors.StoreUnavailable` when the
database cannot be reached; the runtime then retries the message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stalwart.config import StoreSettings
from stalwart.errors import StoreUnavailable
from stalwart.service._claim import Attempt, Claim, ClaimLost, ClaimState
from stalwart.store.engine import db_now, ensure_head, make_engine
from stalwart.store.schema import register

__all__ = ["Attempt", "ClaimLost", "ClaimState", "Claims"]

_T = TypeVar("_T")

_metadata = sa.MetaData()
claims = sa.Table(
    "service_claims",
    _metadata,
    sa.Column("service", sa.String(200), primary_key=True),
    sa.Column("message_id", sa.String(64), primary_key=True),
    sa.Column("claimer", sa.String(255), nullable=False),
    # Epoch seconds by the database's clock.
    sa.Column("claimed_until", sa.Double, nullable=False),
    sa.Column("done_at", sa.Double, nullable=True, index=True),
)


def _done_before(conn: AsyncConnection, older_than: float) -> sa.ColumnElement[bool]:
    """Claims done more than ``older_than`` seconds ago by the database's clock."""
    return claims.c.done_at < db_now(conn) - older_than


async def _prune(engine: AsyncEngine, settings: StoreSettings) -> dict[str, int]:
    """Every service's claims done longer ago than ``[store] claims_retention``."""
    async with engine.begin() as conn:
        done = await conn.execute(
            claims.delete().where(_done_before(conn, settings.claims_retention))
        )
    return {"service_claims": done.rowcount}


register("service", _metadata, prune=_prune)


class Claims:
    """The claims of one service, on the store database."""

    def __init__(self, store_url: str, service: str, *, pool: dict[str, Any] | None = None) -> None:
        pool = pool or {}
        # No pre-ping: a connection found broken is discarded when it fails, and
        # the attempt is retried as "store unavailable".
        self.engine: AsyncEngine = make_engine(store_url, **pool)
        self._service = service

    async def open(self) -> None:
        """Bring the store to the newest schema if behind (the claims table is made by
        its migrations); safe when instances start at the same moment."""
        await ensure_head(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    def _key(self, message_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(claims.c.service == self._service, claims.c.message_id == message_id)

    async def claim_many(self, wanted: Sequence[tuple[str, str]], lease: float) -> list[Claim]:
        """Take the claim on each message id for its claimer (one per delivery attempt)
        unless it is done or held by a live claimer, all in one transaction.

        A message id asked for twice in one call is claimed for the first
        claimer; the later ones see it held. Rows are written in id order: an
        upsert locks every conflicting row, and two instances locking shared
        ids in different orders would deadlock.
        """
        first: dict[str, str] = {}
        for message_id, claimer in wanted:
            first.setdefault(message_id, claimer)
        first = dict(sorted(first.items()))

        async def take(conn: AsyncConnection) -> list[Claim]:
            now = db_now(conn)
            current = claims.c
            taken = set()
            if first:
                insert = (
                    _dialect(conn)
                    .insert(claims)
                    .values(
                        [
                            {
                                "service": self._service,
                                "message_id": message_id,
                                "claimer": claimer,
                                "claimed_until": now + lease,
                            }
                            for message_id, claimer in first.items()
                        ]
                    )
                )
                statement = insert.on_conflict_do_update(
                    index_elements=["service", "message_id"],
                    set_={
                        "claimer": insert.excluded.claimer,
                        "claimed_until": insert.excluded.claimed_until,
                    },
                    where=sa.and_(current.done_at.is_(None), current.claimed_until < now),
                ).returning(current.message_id)
                taken = set((await conn.execute(statement)).scalars())
            others: dict[str, Claim] = {}
            rest = [message_id for message_id in first if message_id not in taken]
            if rest:
                query = sa.select(
                    current.message_id,
                    current.claimer,
                    current.claimed_until - now,
                    current.done_at,
                ).where(current.service == self._service, current.message_id.in_(rest))
                for row in await conn.execute(query):
                    state = ClaimState.DONE if row.done_at is not None else ClaimState.HELD
                    others[row.message_id] = Claim(state, row.claimer, max(0.0, float(row[2])))
            return [
                Claim(ClaimState.CLAIMED, claimer)
                if message_id in taken and first[message_id] == claimer
                # Released between the two statements (absent): try again at once.
                else others.get(message_id, Claim(ClaimState.HELD))
                for message_id, claimer in wanted
            ]

        return await self._run(take)

    async def renew(self, message_id: str, claimer: str, lease: float) -> bool:
        """Push the claim's lease on; False if it is no longer this instance's."""

        async def push(conn: AsyncConnection) -> bool:
            statement = (
                claims.update()
                .where(self._key(message_id), claims.c.claimer == claimer)
                .where(claims.c.done_at.is_(None))
                .values(claimed_until=db_now(conn) + lease)
            )
            return (await conn.execute(statement)).rowcount == 1

        return await self._run(push)

    async def complete(self, conn: AsyncConnection, message_id: str, claimer: str) -> None:
        """Mark the claim done inside ``conn``'s transaction; ClaimLost if taken over."""
        try:
            done = await self._complete(conn, [(message_id, claimer)])
        except (SQLAlchemyError, OSError) as exc:
            raise _unavailable(exc) from exc
        if not done[0]:
            raise _lost(message_id)

    async def complete_many(self, pairs: Sequence[tuple[str, str]]) -> list[ClaimLost | None]:
        """Complete many claims in one transaction; ClaimLost for those taken over."""

        async def finish(conn: AsyncConnection) -> list[ClaimLost | None]:
            done = await self._complete(conn, pairs)
            return [None if ok else _lost(m) for (m, _), ok in zip(pairs, done, strict=True)]

        return await self._run(finish)

    async def _complete(
        self, conn: AsyncConnection, pairs: Sequence[tuple[str, str]]
    ) -> list[bool]:
        current = claims.c
        statement = (
            claims.update()
            .where(current.service == self._service, current.done_at.is_(None))
            .where(sa.tuple_(current.message_id, current.claimer).in_(list(pairs)))
            .values(done_at=db_now(conn))
            .returning(current.message_id, current.claimer)
        )
        completed = {(row[0], row[1]) for row in await conn.execute(statement)}
        return [pair in completed for pair in pairs]

    async def release(self, message_id: str, claimer: str) -> None:
        """Give the claim up after a failed run, so that a retry may claim it at once."""

        async def drop(conn: AsyncConnection) -> None:
            await conn.execute(
                claims.delete()
                .where(self._key(message_id), claims.c.claimer == claimer)
                .where(claims.c.done_at.is_(None))
            )

        await self._run(drop)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A store transaction; connection errors become StoreUnavailable."""
        try:
            async with self.engine.begin() as conn:
                yield conn
        except (DBAPIError, OSError) as exc:
            if isinstance(exc, DBAPIError) and not _is_connection_error(exc):
                raise
            raise _unavailable(exc) from exc

    async def prune(self, older_than: float) -> int:
        """Forget claims done more than ``older_than`` seconds ago (past any redelivery)."""

        async def forget(conn: AsyncConnection) -> int:
            statement = claims.delete().where(
                claims.c.service == self._service, _done_before(conn, older_than)
            )
            return (await conn.execute(statement)).rowcount

        return await self._run(forget)

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """``work`` in one transaction, run again at once when PostgreSQL aborted it
        for a conflict with another transaction (deadlock, serialization)."""
        for tries_left in reversed(range(_CONFLICT_TRIES)):
            try:
                async with self.engine.begin() as conn:
                    return await work(conn)
            except DBAPIError as exc:
                if tries_left and _is_conflict(exc):
                    continue
                raise _unavailable(exc) from exc
            except (SQLAlchemyError, OSError) as exc:
                raise _unavailable(exc) from exc
        raise AssertionError("unreachable: the last try raises or returns")


def _dialect(conn: AsyncConnection) -> Any:
    return sa.dialects.postgresql if conn.dialect.name == "postgresql" else sa.dialects.sqlite


def _lost(message_id: str) -> ClaimLost:
    return ClaimLost(
        f"the claim on {message_id} was taken over by another instance "
        "(its lease had expired); this run's effects are rolled back"
    )


def _is_connection_error(exc: DBAPIError) -> bool:
    """The database is away (lost connection, shutting down, starting, out of slots)."""
    if exc.connection_invalidated or isinstance(
        exc, sa.exc.OperationalError | sa.exc.InterfaceError
    ):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in _AWAY


# SQLSTATE classes: connection exception, insufficient resources, operator
# intervention (admin shutdown, cannot connect now).
_AWAY = frozenset({"08", "53", "57"})
_CONFLICT_TRIES = 5


def _is_conflict(exc: DBAPIError) -> bool:
    """Aborted for another transaction's sake (SQLSTATE class 40): worth running again."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("40")


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"store unavailable: {type(exc).__name__}: {exc}".splitlines()[0])
