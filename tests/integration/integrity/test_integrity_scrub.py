"""Scrubbing two sites on the embedded store and bus: repair from parity, from the
other site's replica, restore missing files, report dark ones, resume after a stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from integrity_support import BLOCK, damage

from stalwart.config import Settings
from stalwart.integrity import ops
from stalwart.integrity.catalog import Catalog
from stalwart.integrity.manifest import MANIFEST_SUFFIX, PARITY_SUFFIX
from stalwart.integrity.scrub import ScrubOptions, TokenBucket, scrub_forever, scrub_site
from stalwart.integrity.settings import integrity_settings
from stalwart.integrity.verify import verify_file
from stalwart.service import EventPublisher


@pytest.fixture
async def publisher(settings: Settings) -> AsyncIterator[EventPublisher]:
    async with EventPublisher.for_settings(settings, "integrity") as pub:
        yield pub


async def _two_sites(
    settings: Settings, catalog: Catalog, publisher: EventPublisher, make_file, names: list[str]
) -> dict[str, bytes]:
    """Ingest ``names`` at jao and replicate them to eu with verified transfers."""
    isettings = integrity_settings(settings)
    jao = ops.Recorder("jao", catalog, publisher.publish)
    eu = ops.Recorder("eu", catalog, publisher.publish)
    contents: dict[str, bytes] = {}
    for name in names:
        path, data = make_file("jao", name)
        contents[name] = data
        await ops.ingest(path, jao, isettings.ingest_options())
        await ops.transfer(
            str(path), str(path.parent.parent / "eu" / name), eu, isettings.transfer_options()
        )
    return contents


def _on_disk(path: Path) -> int:
    """Bytes of a file with its manifest and parity."""
    sidecars = [Path(str(path) + s) for s in (MANIFEST_SUFFIX, PARITY_SUFFIX)]
    return sum(p.stat().st_size for p in [path, *sidecars])


def _spoil_manifest(path: Path) -> None:
    manifest = Path(str(path) + MANIFEST_SUFFIX)
    manifest.write_bytes(manifest.read_bytes()[:-40] + b"garbage")


def _break(eu: Path) -> None:
    damage(eu / "a.bin", 1)
    damage(eu / "b.bin", 2, 5)
    Path(str(eu / "b.bin") + PARITY_SUFFIX).unlink()
    (eu / "c.bin").unlink()
    (eu / "stray.dat").write_bytes(b"who put this here")


async def test_scrub_repairs_restores_and_reports(
    settings, catalog, publisher, events, make_file, tmp_path: Path
) -> None:
    # Given three files at jao, replicated to eu
    data = await _two_sites(settings, catalog, publisher, make_file, ["a.bin", "b.bin", "c.bin"])
    eu = tmp_path / "eu"
    # And at eu: a damaged within parity; b damaged with its parity gone; c deleted;
    # and a stray file nobody catalogued
    _break(eu)
    # When eu is scrubbed
    recorder = ops.Recorder("eu", catalog, publisher.publish)
    report = await scrub_site(catalog, recorder, ScrubOptions(site="eu", root=eu))
    # Then every replica is whole again, each by the cheapest means
    c = report.counts
    assert (c.checked, c.ok, c.repaired, c.corrupt, c.missing, c.dark) == (3, 0, 3, 0, 1, 1)
    for name, content in data.items():
        assert (eu / name).read_bytes() == content
    assert report.missing == [str(eu / "c.bin")] and report.dark == [str(eu / "stray.dat")]
    methods = {(r["name"], r["method"]) for r in await catalog.repairs()}
    assert ("a.bin", "parity") in methods
    assert ("b.bin", "refetch") in methods and ("b.bin", "parity-rebuild") in methods
    assert ("c.bin", "replica") in methods
    refetch = next(r for r in await catalog.repairs() if r["method"] == "refetch")
    assert refetch["bytes"] == 2 * BLOCK and refetch["source"] == str(tmp_path / "jao" / "b.bin")
    # And the copy that restored c is counted in bytes, as repaired and as read
    copied = next(r for r in await catalog.repairs() if r["method"] == "replica")
    assert copied["bytes"] == _on_disk(eu / "c.bin") and report.restored == [str(eu / "c.bin")]
    assert c.bytes_read > _on_disk(eu / "a.bin") + copied["bytes"]
    assert not report.still_broken
    assert {r["state"] for r in await catalog.replicas("eu")} == {"ok", "repaired"}
    # And the run and its events are recorded
    assert (await catalog.scrubs())[0]["state"] == "done"
    await events.wait("scrubbed")
    await events.wait("missing")
    await events.wait("dark")
    assert {e["name"] for e in await events.wait("repaired", 2)} >= {"a.bin", "b.bin"}


async def test_scrub_without_repair_only_reports(
    settings, catalog, publisher, make_file, tmp_path: Path
) -> None:
    await _two_sites(settings, catalog, publisher, make_file, ["a.bin"])
    damage(tmp_path / "eu" / "a.bin", 0, 1, 2)
    recorder = ops.Recorder("eu", catalog, publisher.publish)
    report = await scrub_site(catalog, recorder, ScrubOptions(site="eu", repair=False))
    assert report.corrupt == [str(tmp_path / "eu" / "a.bin")] and report.counts.repaired == 0
    assert (await catalog.replicas("eu"))[0]["state"] == "corrupt"


async def test_interrupted_scrub_resumes_from_its_cursor(
    settings, catalog, publisher, make_file
) -> None:
    # Given three replicas at eu
    await _two_sites(settings, catalog, publisher, make_file, ["a.bin", "b.bin", "c.bin"])
    recorder = ops.Recorder("eu", catalog, publisher.publish)
    stop = asyncio.Event()
    # When a scrub is stopped after its first file
    first = await scrub_site(
        catalog, recorder, ScrubOptions(site="eu"), stop=stop, on_file=lambda _name: stop.set()
    )
    assert first.interrupted and first.counts.checked == 1
    assert (await catalog.scrubs())[0]["cursor"] == "a.bin"
    # Then the next run resumes it and checks only the other two
    seen: list[str] = []
    second = await scrub_site(catalog, recorder, ScrubOptions(site="eu"), on_file=seen.append)
    assert second.resumed and second.run_id == first.run_id
    assert seen == ["b.bin", "c.bin"] and second.counts.checked == 3


async def test_scheduled_scrub_runs_until_stopped(settings, catalog, publisher, make_file) -> None:
    await _two_sites(settings, catalog, publisher, make_file, ["a.bin"])
    recorder = ops.Recorder("eu", catalog, publisher.publish)
    stop = asyncio.Event()
    runs: list[int] = []
    waits: list[float] = []

    def on_report(report) -> None:
        runs.append(report.run_id)
        if len(runs) == 2:
            stop.set()

    await asyncio.wait_for(
        scrub_forever(
            catalog,
            recorder,
            ScrubOptions(site="eu"),
            every=0.05,
            spread=0.5,
            stop=stop,
            on_report=on_report,
            on_next=waits.append,
        ),
        timeout=30,
    )
    assert len(runs) == 2 and runs[0] != runs[1]
    # And the wait before the next run was announced, within the spread
    assert len(waits) == 1 and 0.025 <= waits[0] <= 0.075


def test_token_bucket_paces_reads() -> None:
    # Given a 1000 B/s bucket on a fake clock
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(1000, clock=lambda: now[0], sleep=sleep)
    # When 3000 bytes are taken at once, in three steps
    for _ in range(3):
        bucket.take(1000)
    # Then the first second's burst is free and the rest waits 2 s in all
    assert sum(slept) == pytest.approx(2.0)
    unlimited = TokenBucket(None, sleep=sleep)
    unlimited.take(10**12)
    assert sum(slept) == pytest.approx(2.0)


def test_an_interrupted_bucket_ends_its_wait_at_once() -> None:
    # Given a bucket so slow that one block waits for days, taken in a worker thread
    import threading
    import time

    bucket = TokenBucket(1)
    worker = threading.Thread(target=bucket.take, args=(10**6,))
    started = time.monotonic()
    worker.start()
    time.sleep(0.2)
    # When the run is stopped
    bucket.interrupt()
    worker.join(timeout=5)
    # Then the wait ends at once, and later takes do not wait
    assert not worker.is_alive()
    bucket.take(10**6)
    assert time.monotonic() - started < 5


async def test_scrub_with_the_catalog_on_postgresql(
    settings, publisher, make_file, postgres_url, tmp_path: Path
) -> None:
    # Given the catalog in PostgreSQL and two sites, one replica damaged beyond its parity
    catalog = await Catalog.open(postgres_url)
    try:
        data = await _two_sites(settings, catalog, publisher, make_file, ["a.bin", "b.bin"])
        damage(tmp_path / "eu" / "b.bin", 0, 1, 2)
        # When eu is scrubbed, Then the other site's replica provides the missing block
        recorder = ops.Recorder("eu", catalog, publisher.publish)
        report = await scrub_site(catalog, recorder, ScrubOptions(site="eu"))
        assert (report.counts.ok, report.counts.repaired) == (1, 1)
        assert (tmp_path / "eu" / "b.bin").read_bytes() == data["b.bin"]
        refetch = [r for r in await catalog.repairs() if r["method"] == "refetch"]
        assert refetch and refetch[0]["bytes"] == BLOCK
    finally:
        await catalog.close()


@pytest.mark.parametrize(
    ("data_damaged", "method"), [(False, "manifest"), (True, "replica")], ids=["intact", "damaged"]
)
async def test_a_damaged_manifest_is_rebuilt_from_intact_data_only(
    settings, catalog, publisher, make_file, tmp_path: Path, data_damaged: bool, method: str
) -> None:
    # Given a replica at eu whose manifest is garbage, and its data whole or not
    data = await _two_sites(settings, catalog, publisher, make_file, ["a.bin"])
    copy = tmp_path / "eu" / "a.bin"
    _spoil_manifest(copy)
    if data_damaged:
        damage(copy, 0)
    transfers = len(await catalog.transfers())
    # When eu is scrubbed
    recorder = ops.Recorder("eu", catalog, publisher.publish)
    report = await scrub_site(catalog, recorder, ScrubOptions(site="eu"))
    # Then intact data gets a new manifest made from it, with nothing copied from jao;
    # damaged data is never trusted: jao's copy replaces it
    assert report.counts.repaired == 1 and not report.still_broken
    assert [r["method"] for r in await catalog.repairs() if r["site"] == "eu"] == [method]
    assert len(await catalog.transfers()) == transfers + data_damaged
    assert copy.read_bytes() == data["a.bin"] and verify_file(copy).ok


async def test_scrub_rate_holds_for_every_byte_it_reads(
    settings, catalog, publisher, make_file, tmp_path: Path
) -> None:
    # Given two replicas at eu, one to be restored from jao (data, parity and manifest)
    await _two_sites(settings, catalog, publisher, make_file, ["a.bin", "b.bin"])
    (tmp_path / "eu" / "b.bin").unlink()
    shown: list[int] = []
    rate = 500_000
    # When scrubbed at 500 kB/s with a progress bar
    recorder = ops.Recorder("eu", catalog, publisher.publish)
    started = time.monotonic()
    report = await scrub_site(
        catalog, recorder, ScrubOptions(site="eu", rate=rate), progress=shown.append
    )
    elapsed = time.monotonic() - started
    # Then the bar saw every byte the run read (so it shows the true rate)
    read = report.counts.bytes_read
    assert sum(shown) == read
    # And the reads took as long as the rate demands: all but the first second's burst
    assert read > 2 * rate
    assert elapsed >= (read - rate) / rate * 0.9
    assert elapsed <= (read - rate) / rate + 5.0


async def test_a_vanished_good_replica_does_not_stop_the_scrub(
    settings, catalog, publisher, make_file, tmp_path: Path
) -> None:
    # Given two replicas at eu damaged beyond parity, and jao's copy of the first gone
    data = await _two_sites(settings, catalog, publisher, make_file, ["a.bin", "b.bin"])
    damage(tmp_path / "eu" / "a.bin", 0, 1, 2)
    damage(tmp_path / "eu" / "b.bin", 0, 1, 2)
    (tmp_path / "jao" / "a.bin").unlink()
    # When eu is scrubbed, Then a stays corrupt, and b is still repaired after it
    recorder = ops.Recorder("eu", catalog, publisher.publish)
    report = await scrub_site(catalog, recorder, ScrubOptions(site="eu"))
    assert report.corrupt == [str(tmp_path / "eu" / "a.bin")] and report.counts.repaired == 1
    assert (tmp_path / "eu" / "b.bin").read_bytes() == data["b.bin"]
