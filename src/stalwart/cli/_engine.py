"""The store for commands that read it: an engine on the newest schema, the
store's own one-line advice when the database cannot be reached, and a clear
refusal where no store exists (instead of creating an empty one)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.cli._existing import refuse_missing
from stalwart.config import Settings
from stalwart.errors import StoreUnavailable
from stalwart.redact import redact_url
from stalwart.store.engine import open_engine

__all__ = ["store_engine"]


@asynccontextmanager
async def store_engine(settings: Settings, url: str, **options: Any) -> AsyncIterator[AsyncEngine]:
    """An engine for ``url`` (migrated if behind), disposed on exit; a connection
    failure is StoreUnavailable."""
    refuse_missing(settings, url, "store")
    engine = await open_engine(url, **options)
    try:
        yield engine
    except (DBAPIError, OSError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise StoreUnavailable(
            f"cannot reach the store at {redact_url(url)}: {detail}; check that the database "
            "is running and that store.url in the settings is right"
        ) from None
    finally:
        await engine.dispose()
