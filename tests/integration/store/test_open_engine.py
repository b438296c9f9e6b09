"""Parts open the store with open_engine: at the newest schema, whoever starts first."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from stalwart.errors import StoreUnavailable
from stalwart.store import current_revision, head_revision
from stalwart.store.engine import ensure_head, make_engine, open_engine


async def _tables(engine: sa.ext.asyncio.AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def test_concurrent_openers_all_succeed_and_migrate_once(store_url: str) -> None:
    # Given eight processes' worth of openers and an empty database
    # When all of them open the store at the same moment
    engines = await asyncio.gather(*(open_engine(store_url) for _ in range(8)))
    try:
        # Then none failed, and every part's tables exist at the newest revision
        assert await current_revision(engines[0]) == head_revision()
        assert {"ha_leases", "integrity_files", "service_claims", "watchdog_programs"} <= (
            await _tables(engines[0])
        )
        # And opening again later changes nothing
        again = await open_engine(store_url)
        assert await current_revision(again) == head_revision()
        await again.dispose()
    finally:
        for engine in engines:
            await engine.dispose()


async def test_without_migrate_the_schema_is_left_alone(tmp_path: Path) -> None:
    # Given a SQLite store in a folder that does not exist yet
    url = f"sqlite:///{tmp_path}/new/store.db"
    # When it is opened without migrating
    engine = await open_engine(url, migrate=False)
    try:
        # Then its folder is made, and nothing else
        assert (tmp_path / "new").is_dir()
        assert await current_revision(engine) is None
        # And ensure_head migrates it, once per engine
        await ensure_head(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE alembic_version"))
        await ensure_head(engine)
        assert await current_revision(engine) is None
    finally:
        await engine.dispose()


async def test_an_unreachable_store_is_one_line_of_advice() -> None:
    with pytest.raises(StoreUnavailable) as raised:
        await open_engine("postgresql://postgres@127.0.0.1:1/nothing")
    message = str(raised.value)
    assert "\n" not in message
    assert "cannot reach the store" in message and "store.url" in message


def test_the_head_from_file_names_is_alembic_s_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import stalwart.store.migrations

    config = Config()
    config.set_main_option("script_location", str(Path(stalwart.store.migrations.__file__).parent))
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()


async def test_a_part_s_engine_made_early_is_migrated_when_the_store_answers(
    sqlite_store_url: str,
) -> None:
    # Given an engine made before the store was migrated (as a replica's is)
    engine = make_engine(sqlite_store_url)
    try:
        assert "ha_leases" not in await _tables(engine)
        # When the part first reaches the store
        await ensure_head(engine)
        # Then its tables are there
        assert "ha_leases" in await _tables(engine)
    finally:
        await engine.dispose()
