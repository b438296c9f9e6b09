"""The catalog on SQLite and PostgreSQL: idempotent schema, upserts, queries, summary."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stalwart.errors import StoreUnavailable
from stalwart.integrity.catalog import Catalog, summary
from stalwart.integrity.ingest import IngestOptions, ingest_file


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Catalog]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/deep/dir/store.db"
    else:
        url = request.getfixturevalue("postgres_url")
    first = await Catalog.open(url)
    await first.close()
    opened = await Catalog.open(url)  # the second open finds the tables: idempotent
    try:
        yield opened
    finally:
        await opened.close()


async def test_files_replicas_transfers_repairs_scrubs(any_catalog: Catalog, tmp_path) -> None:
    # Given an ingested file
    path = tmp_path / "a.bin"
    path.write_bytes(os.urandom(100_000))
    manifest = ingest_file(path, IngestOptions(block_size=65536, data_blocks=2)).manifest
    cat = any_catalog
    # When it is registered twice and has replicas at two sites, one updated
    await cat.register_file(manifest)
    await cat.register_file(manifest)
    await cat.set_replica("a.bin", "jao", str(path), "ok", digest=manifest.digest, verified=True)
    await cat.set_replica("a.bin", "eu", "/eu/a.bin", "ok", verified=True)
    await cat.set_replica("a.bin", "eu", "/eu/a.bin", "corrupt", detail="2 bad blocks")
    await cat.record_transfer(
        {
            "name": "a.bin",
            "site": "eu",
            "src": str(path),
            "dst": "/eu/a.bin",
            "outcome": "repaired",
            "size": 100_000,
            "bytes_moved": 100_000,
            "blocks_repaired": 1,
        }
    )
    await cat.record_repair(path="/eu/a.bin", method="parity", blocks=[1], name="a.bin", site="eu")
    run_id, cursor, counts = await cat.scrub_begin("eu")
    counts.checked, counts.corrupt = 1, 1
    await cat.scrub_progress(run_id, "a.bin", counts, "done")
    # Then each query shows one current row per thing
    files = await cat.files()
    assert [f["name"] for f in files] == ["a.bin"] and files[0]["digest"] == manifest.digest
    replicas = {r["site"]: r for r in await cat.replicas()}
    assert replicas["eu"]["state"] == "corrupt" and replicas["eu"]["detail"] == "2 bad blocks"
    assert replicas["jao"]["state"] == "ok" and replicas["jao"]["verified_at"] is not None
    assert [r["site"] for r in await cat.replicas("eu")] == ["eu"]
    assert (await cat.transfers())[0]["outcome"] == "repaired"
    assert (await cat.repairs())[0]["blocks"] == "[1]"
    assert (await cat.scrubs())[0]["state"] == "done" and cursor is None
    # And the panel's summary adds it up, JSON-ready
    panel = await summary(cat.engine)
    assert panel["files"] == 1
    assert panel["replicas"] == {"eu": {"corrupt": 1}, "jao": {"ok": 1}}
    assert panel["transfers"][0]["blocks_repaired"] == 1
    assert isinstance(panel["transfers"][0]["finished_at"], str)
    assert panel["scrubs"][0]["site"] == "eu" and panel["repairs"][0]["method"] == "parity"


async def test_unfinished_scrub_run_is_resumed(any_catalog: Catalog) -> None:
    # Given a scrub run interrupted after "b"
    run_id, _, counts = await any_catalog.scrub_begin("na")
    counts.checked = 2
    await any_catalog.scrub_progress(run_id, "b", counts, "interrupted")
    # When a run begins again, Then it is the same run, from the cursor, with its counts
    again, cursor, resumed = await any_catalog.scrub_begin("na")
    assert (again, cursor, resumed.checked) == (run_id, "b", 2)
    # And once done, the next run is a new one
    await any_catalog.scrub_progress(run_id, "z", resumed, "done")
    fresh, cursor, _ = await any_catalog.scrub_begin("na")
    assert fresh != run_id and cursor is None


async def test_unreachable_store_is_a_clear_error() -> None:
    with pytest.raises(StoreUnavailable, match=r"cannot reach the store .*store\.url"):
        await Catalog.open("postgresql://postgres@127.0.0.1:1/nothing")


async def test_an_audit_reads_replicas_with_their_sizes_and_the_newest_good_one(
    any_catalog: Catalog, tmp_path: Path
) -> None:
    # Given two ingested files: at eu one good replica and one corrupt, and at na
    # a repaired one outside the archive folder
    cat = any_catalog
    for name in ("a.bin", "b.bin"):
        path = tmp_path / name
        path.write_bytes(os.urandom(70_000 if name == "a.bin" else 90_000))
        await cat.register_file(ingest_file(path, IngestOptions(block_size=65536)).manifest)
    await cat.set_replica("a.bin", "eu", "/archive/eu/a.bin", "ok")
    await cat.set_replica("b.bin", "eu", "/archive/eu/b.bin", "corrupt")
    await cat.set_replica("b.bin", "na", "/elsewhere/b.bin", "repaired")
    # Then the newest good replica below a site's folder skips the corrupt one
    assert await cat.newest_good_replica("eu", "/archive/eu") == "/archive/eu/a.bin"
    assert await cat.newest_good_replica("eu", "/archive/eu/") == "/archive/eu/a.bin"
    assert await cat.newest_good_replica("na", "/archive/na") is None
    assert await cat.newest_good_replica("na", "/elsewhere") == "/elsewhere/b.bin"
    # And every replica comes with its file's size and its state
    rows = await cat.sized_replicas()
    sized = sorted((r["name"], r["site"], r["state"], r["size"]) for r in rows)
    assert sized == [
        ("a.bin", "eu", "ok", 70_000),
        ("b.bin", "eu", "corrupt", 90_000),
        ("b.bin", "na", "repaired", 90_000),
    ]
