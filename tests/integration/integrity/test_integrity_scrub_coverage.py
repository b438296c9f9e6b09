"""A scrub must not leave a damaged replica behind while reporting the site clean.

Traced from the 1-hour chaos campaign (seed 8, fault 712): a heal's scrub at na failed
on a replica that the demo's retention forgot under it (a foreign-key violation),
leaving its run *interrupted* with a cursor; the next fault truncated the replica at
that cursor (the newest good one: the scrub had just verified it), and the next heal
resumed the run after the cursor, never looked at it, and reported no damage.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_integrity_scrub import _two_sites

from stalwart.config import Settings
from stalwart.events import IntegrityEvent, IntegrityKind
from stalwart.integrity import ops
from stalwart.integrity.catalog import Catalog
from stalwart.integrity.manifest import sidecar_paths
from stalwart.integrity.scrub import ScrubOptions, scrub_site
from stalwart.integrity.verify import verify_file
from stalwart.service import EventPublisher


@pytest.fixture
async def publisher(settings: Settings) -> AsyncIterator[EventPublisher]:
    async with EventPublisher.for_settings(settings, "integrity") as pub:
        yield pub


def _cut(path: Path) -> None:
    """What the campaign's truncate-transfer fault does."""
    os.truncate(path, path.stat().st_size // 2)


async def test_a_truncated_replica_is_restored_to_its_full_length(
    settings, catalog, publisher, make_file, tmp_path: Path
) -> None:
    # Given a replica at eu cut to half its length
    data = await _two_sites(settings, catalog, publisher, make_file, ["a.bin"])
    copy = tmp_path / "eu" / "a.bin"
    _cut(copy)
    # When eu is scrubbed, Then it has every byte again, and its length
    recorder = ops.Recorder("eu", catalog, publisher.publish)
    report = await scrub_site(catalog, recorder, ScrubOptions(site="eu"))
    assert report.counts.repaired == 1 and not report.still_broken
    assert copy.read_bytes() == data["a.bin"] and verify_file(copy).ok


async def _forgotten_during_a_scrub(
    settings: Settings, catalog: Catalog, publisher: EventPublisher, make_file, tmp_path: Path
) -> None:
    # Given three replicas at eu
    await _two_sites(settings, catalog, publisher, make_file, ["a.bin", "b.bin", "c.bin"])
    forgotten: list[str] = []

    async def emit(event: IntegrityEvent) -> None:
        # Retention removes b (data first, then the catalog) once a has been checked:
        # after the scrub listed its batch, before it reaches b
        if event.event is IntegrityKind.VERIFIED and event.name == "a.bin" and not forgotten:
            for site in ("jao", "eu"):
                path = tmp_path / site / "b.bin"
                for each in (path, *sidecar_paths(path)):
                    each.unlink(missing_ok=True)
            await catalog.forget(["b.bin"])
            forgotten.append("b.bin")
        await publisher.publish(event)

    # When eu is scrubbed
    recorder = ops.Recorder("eu", catalog, emit)
    report = await scrub_site(catalog, recorder, ScrubOptions(site="eu"))
    # Then the run finishes: b was removed on purpose, it is neither missing nor back
    assert forgotten and not report.interrupted and not report.still_broken
    assert report.counts.checked == 2 and report.missing == []
    assert (await catalog.scrubs())[0]["state"] == "done"
    assert await catalog.replicas(name="b.bin") == [] and await catalog.file("b.bin") is None


async def test_a_replica_forgotten_during_a_scrub_does_not_stop_it(
    settings, catalog, publisher, make_file, tmp_path: Path
) -> None:
    await _forgotten_during_a_scrub(settings, catalog, publisher, make_file, tmp_path)


async def test_a_replica_forgotten_during_a_scrub_on_postgresql(
    settings, publisher, make_file, postgres_url, tmp_path: Path
) -> None:
    # The campaign's store: PostgreSQL, where the foreign-key violation was seen
    catalog = await Catalog.open(postgres_url)
    try:
        await _forgotten_during_a_scrub(settings, catalog, publisher, make_file, tmp_path)
    finally:
        await catalog.close()


async def test_a_resumed_scrub_rechecks_replicas_damaged_since_it_stopped(
    settings, catalog, publisher, make_file, tmp_path: Path
) -> None:
    # Given three replicas at eu and a scrub that stopped after the first
    data = await _two_sites(settings, catalog, publisher, make_file, ["a.bin", "b.bin", "c.bin"])
    eu = tmp_path / "eu"
    recorder = ops.Recorder("eu", catalog, publisher.publish)
    stop = asyncio.Event()
    first = await scrub_site(
        catalog, recorder, ScrubOptions(site="eu"), stop=stop, on_file=lambda _name: stop.set()
    )
    assert first.interrupted and (await catalog.scrubs())[0]["cursor"] == "a.bin"
    # And the replica at its cursor, the newest good one (what the campaign damages),
    # cut to half its length
    assert await catalog.newest_good_replica("eu", str(eu)) == str(eu / "a.bin")
    _cut(eu / "a.bin")
    # When the next scrub resumes the run
    second = await scrub_site(catalog, recorder, ScrubOptions(site="eu"))
    # Then it also goes back over what the first part checked, and repairs a
    assert second.resumed and second.run_id == first.run_id and not second.still_broken
    assert (eu / "a.bin").read_bytes() == data["a.bin"] and verify_file(eu / "a.bin").ok
    assert {r["name"]: r["state"] for r in await catalog.replicas("eu")}["a.bin"] == "repaired"
    # And only what changed is read again: b and c once, a twice (before and after)
    assert second.counts.checked == 4 and second.counts.repaired == 1


async def test_a_resumed_scrub_still_reports_what_it_found_broken_before_it_stopped(
    settings, catalog, publisher, make_file, tmp_path: Path
) -> None:
    # Given a scrub without repair that found a damaged and stopped right after it
    await _two_sites(settings, catalog, publisher, make_file, ["a.bin", "b.bin"])
    eu = tmp_path / "eu"
    _cut(eu / "a.bin")
    recorder = ops.Recorder("eu", catalog, publisher.publish)
    stop = asyncio.Event()
    options = ScrubOptions(site="eu", repair=False)
    first = await scrub_site(
        catalog, recorder, options, stop=stop, on_file=lambda _name: stop.set()
    )
    assert first.interrupted and first.corrupt == [str(eu / "a.bin")]
    # When the run is resumed, Then its report still has a broken (the exit status)
    second = await scrub_site(catalog, recorder, options)
    assert second.resumed and second.still_broken == [str(eu / "a.bin")]


async def test_a_repair_that_cannot_write_does_not_stop_the_scrub(
    settings, catalog, publisher, make_file, tmp_path: Path, monkeypatch
) -> None:
    # Given two damaged replicas at eu, and a disk that is full while a is repaired
    data = await _two_sites(settings, catalog, publisher, make_file, ["a.bin", "b.bin"])
    eu = tmp_path / "eu"
    _cut(eu / "a.bin")
    _cut(eu / "b.bin")
    real = ops.repair_file

    def repair_file(path: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if path.name == "a.bin":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ops, "repair_file", repair_file)
    # When eu is scrubbed
    recorder = ops.Recorder("eu", catalog, publisher.publish)
    report = await scrub_site(catalog, recorder, ScrubOptions(site="eu"))
    # Then the run finishes: a, which could not be patched in place, is replaced by a
    # copy of jao's replica, and b is repaired
    assert not report.interrupted and not report.still_broken
    assert (await catalog.scrubs())[0]["state"] == "done"
    for name in ("a.bin", "b.bin"):
        assert (eu / name).read_bytes() == data[name]
    methods = {(r["name"], r["method"]) for r in await catalog.repairs(site="eu")}
    assert ("a.bin", "replica") in methods and ("b.bin", "refetch") in methods
