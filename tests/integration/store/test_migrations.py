"""Migrations build exactly the schema of ``schema.py``, once, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from stalwart.store import Store, current_revision, head_revision, upgrade
from stalwart.store.schema import metadata

# Full-text search objects are dialect specific and made by the migration alone.
_SEARCH_OBJECTS = {"search_tsv", "ix_messages_search", "alembic_version"}


def _declared(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    return not (name in _SEARCH_OBJECTS or (name or "").startswith("messages_fts"))


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"include_object": _declared})
    return list(compare_metadata(context, metadata))


async def test_the_migrated_schema_matches_the_declared_one(store: Store) -> None:
    # Given a store opened (and so migrated) from scratch
    # When comparing the database with schema.py; Then there is no difference
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
    assert await current_revision(store.engine) == head_revision()


async def test_upgrading_twice_is_harmless(store: Store) -> None:
    assert await upgrade(store.engine) == head_revision()
    assert await upgrade(store.engine) == head_revision()
