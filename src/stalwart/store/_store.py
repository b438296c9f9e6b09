"""The :class:`Store` handle: an engine on a migrated database, and batch writes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.envelope import Envelope, encode
from stalwart.errors import StalwartError, StoreUnavailable, first_line
from stalwart.store._rows import Rows, build_rows
from stalwart.store._writer import is_unavailable, write_rows
from stalwart.store.engine import open_engine

__all__ = ["Store", "StoreDataError"]

_log = logging.getLogger("stalwart.store")


class StoreDataError(StalwartError):
    """The database refused the data itself (too long, wrong type), not the connection."""


class Store:
    """A message store on SQLite or PostgreSQL. Open with :meth:`open`; close when done.

    Read it with :mod:`stalwart.store.queries`; the persistence subscriber
    writes it with :meth:`write`.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, **engine_options: Any) -> Store:
        """Connect to ``url`` and (by default) bring its schema up to date.

        Raises :class:`StoreUnavailable` when the database cannot be reached.
        """
        return cls(await open_engine(url, migrate=migrate, **engine_options))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def close(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def write(self, items: Sequence[Envelope | tuple[Envelope, int]]) -> Rows:
        """Store envelopes (optionally with their encoded sizes) in one transaction.

        Idempotent: writing the same envelopes again changes nothing. Returns the
        rows written, whose ``problems`` name envelopes with an invalid
        ``sys.*`` body (stored as messages, without effects). Raises
        :class:`StoreUnavailable` when the database is down or busy (retry
        later) and :class:`StoreDataError` when it refused the data.
        """
        pairs = [item if isinstance(item, tuple) else (item, len(encode(item))) for item in items]
        rows = build_rows(pairs)
        await self.write_rows(rows)
        return rows

    async def write_rows(self, rows: Rows) -> None:
        """Write prepared rows in one transaction, translating driver errors."""
        try:
            async with self.engine.begin() as conn:
                await write_rows(conn, rows)
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(
                    f"the store is unavailable ({type(exc).__name__}: {first_line(exc)}); "
                    "writes are retried: check the database server"
                ) from exc
            raise StoreDataError(f"the store refused a batch: {first_line(exc)}") from exc
