"""Parts' own tables: created once, whatever the number of processes racing to do it."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from stalwart.store.engine import create_missing, make_engine


def _metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table(
        "part_things",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), index=True),
    )
    return metadata


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, sqlite_store_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_store_url
    return str(request.getfixturevalue("postgres_url"))


async def test_concurrent_creators_all_succeed_and_create_once(url: str) -> None:
    # Given eight engines (as eight processes would have) and no table yet
    engines = [make_engine(url) for _ in range(8)]
    metadata = _metadata()

    async def create(engine: sa.ext.asyncio.AsyncEngine) -> None:
        async with engine.begin() as conn:
            await create_missing(conn, metadata)

    try:
        # When all of them create the part's tables at the same moment
        await asyncio.gather(*(create(e) for e in engines))
        # Then none failed, and the table and its index exist once
        async with engines[0].connect() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("part_things"))
        assert "part_things" in tables
        assert [i["column_names"] for i in indexes] == [["name"]]
        # And doing it again later changes nothing
        await create(engines[0])
    finally:
        for engine in engines:
            await engine.dispose()
