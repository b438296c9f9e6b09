"""Migrations build exactly the tables every part declares, once, on both databases,
and bring a store of the release before them (parts' tables made by the parts) along."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

import stalwart.ha
import stalwart.integrity
import stalwart.service.claims  # the claims table: not loaded by stalwart.service itself
import stalwart.watchdog
from stalwart.store import Store, current_revision, head_revision, upgrade
from stalwart.store.engine import make_engine
from stalwart.store.schema import registered

# Full-text search objects are dialect specific and made by the migration alone.
_SEARCH_OBJECTS = {"search_tsv", "ix_messages_search", "alembic_version"}
_PARTS = (stalwart.ha, stalwart.integrity, stalwart.service, stalwart.watchdog)
_WHEN = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _declared(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    return not (name in _SEARCH_OBJECTS or (name or "").startswith("messages_fts"))


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"include_object": _declared})
    return list(compare_metadata(context, list(registered().values())))  # type: ignore[arg-type]


def test_every_part_with_tables_registered_them() -> None:
    # Given the parts imported (_PARTS); Then each one's tables are in the registry
    assert _PARTS
    assert sorted(registered()) == ["ha", "integrity", "service", "store", "watchdog"]


async def test_the_migrated_schema_matches_the_declared_one(store: Store) -> None:
    # Given a store opened (and so migrated) from scratch
    # When comparing the database with every part's tables; Then there is no difference
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
    assert await current_revision(store.engine) == head_revision()


async def test_upgrading_twice_is_harmless(store: Store) -> None:
    assert await upgrade(store.engine) == head_revision()
    assert await upgrade(store.engine) == head_revision()


_processed = sa.Table(  # the runtime's record of processed ids before service_claims
    "service_processed",
    sa.MetaData(),
    sa.Column("service", sa.String(200), primary_key=True),
    sa.Column("message_id", sa.String(64), primary_key=True),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


def _previous_release(conn: Connection, parts: tuple[str, ...]) -> None:
    """What revision 0004 and the parts' own table creation left: some of the parts'
    tables, with rows, and the old service_processed."""
    tables = registered()
    for part in parts:
        tables[part].create_all(conn)
    _processed.create(conn)
    conn.execute(
        _processed.insert(),
        [
            {"service": "qa", "message_id": "m-1", "processed_at": _WHEN},
            {"service": "qa", "message_id": "m-2", "processed_at": _WHEN},
        ],
    )
    if "service" in parts:
        claims = tables["service"].tables["service_claims"]
        conn.execute(
            claims.insert().values(
                service="qa", message_id="m-1", claimer="qa@jao/1", claimed_until=1.0, done_at=2.0
            )
        )
    if "ha" in parts:
        leases = tables["ha"].tables["ha_leases"]
        conn.execute(leases.insert().values(role="dispatcher", holder="host-1", token=7))
    if "watchdog" in parts:
        programs = tables["watchdog"].tables["watchdog_programs"]
        conn.execute(
            programs.insert().values(
                host="h", watchdog="w", program="p", instance=0, state="running", updated_at=_WHEN
            )
        )


def _rows(conn: Connection, table: str, *columns: str) -> list[tuple[Any, ...]]:
    query = sa.select(*(sa.column(c) for c in columns)).select_from(sa.table(table))
    return [tuple(row) for row in conn.execute(query.order_by(sa.text("1, 2")))]


@pytest.mark.parametrize("parts", [("ha", "integrity", "service", "watchdog"), ("ha",)])
async def test_a_store_of_the_previous_release_upgrades_and_keeps_its_rows(
    store_url: str, parts: tuple[str, ...]
) -> None:
    # Given a store at revision 0004 whose parts made (some of) their own tables
    engine = make_engine(store_url)
    try:
        assert await upgrade(engine, "0004") == "0004"
        async with engine.begin() as conn:
            await conn.run_sync(_previous_release, parts)
        # When it is upgraded
        assert await upgrade(engine) == head_revision()
        async with engine.connect() as conn:
            # Then every part's table is there as declared, and service_processed is gone
            assert await conn.run_sync(_diff) == []
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            assert "service_processed" not in names
            # And its ids are done claims; a claim already recorded keeps its claimer
            claims = await conn.run_sync(
                _rows, "service_claims", "message_id", "claimer", "done_at", "claimed_until"
            )
            copied = ("service_processed", _WHEN.timestamp(), _WHEN.timestamp())
            expected_first = ("qa@jao/1", 2.0, 1.0) if "service" in parts else copied
            assert [c[0] for c in claims] == ["m-1", "m-2"]
            assert claims[0][1:] == pytest.approx(expected_first)
            assert claims[1][1:] == pytest.approx(copied)
            # And the rows the parts had are kept
            leases = await conn.run_sync(_rows, "ha_leases", "role", "holder", "token")
            assert leases == [("dispatcher", "host-1", 7)]
            programs = await conn.run_sync(_rows, "watchdog_programs", "program", "state")
            assert programs == ([("p", "running")] if "watchdog" in parts else [])
    finally:
        await engine.dispose()


async def test_many_processes_migrating_at_once_all_succeed(store_url: str) -> None:
    # Given eight engines (as eight processes starting together would have) on an empty store
    engines = [make_engine(store_url) for _ in range(8)]
    try:
        # When all of them migrate at the same moment
        reached = await asyncio.gather(*(upgrade(e) for e in engines))
        # Then none failed, and the schema is whole
        assert reached == [head_revision()] * 8
        async with engines[0].connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        for engine in engines:
            await engine.dispose()
