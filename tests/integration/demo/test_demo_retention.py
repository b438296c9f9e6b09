"""The demo runs for days in bounded space: delivered products are deleted once old,
at every site, and forgotten by the catalog so that scrub does not miss them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from stalwart.config import Settings, load_settings
from stalwart.demo.models import SITES
from stalwart.demo.retention import DemoSettings, sweep
from stalwart.envelope import utcnow
from stalwart.errors import EX_CONFIG, ConfigError
from stalwart.integrity import ops
from stalwart.integrity.catalog import Catalog
from stalwart.integrity.ingest import ingest_file
from stalwart.integrity.scrub import ScrubOptions, scrub_site


async def _replicate(
    catalog: Catalog, home: Path, name: str, bad_site: str | None = None
) -> list[Path]:
    """A product ingested at every site (as delivery leaves it); one site bad if asked."""
    data = os.urandom(70_000)
    paths = []
    for site in SITES:
        path = home / "demo" / "archive" / site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        done = ingest_file(path)
        await catalog.register_file(done.manifest)
        state = "corrupt" if site == bad_site else "ok"
        await catalog.set_replica(name, site, str(path), state, digest=done.manifest.digest)
        paths.append(path)
    return paths


def _settings(home: Path) -> Settings:
    return load_settings(env={"STALWART_HOME": str(home)})


async def test_sweep_removes_old_delivered_products_and_keeps_the_rest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = _settings(home)
    catalog = await Catalog.open(settings.store.url)
    try:
        # Given a delivered product (good at every site) and one with a corrupt replica
        delivered = await _replicate(catalog, home, "delivered.fits")
        pending = await _replicate(catalog, home, "pending.fits", bad_site="eu")
        await catalog.record_transfer({"src": "a", "dst": "b", "outcome": "transferred"})
        demo = DemoSettings(retention=600, store_retention=3600)
        # When a sweep runs before the retention age, Then nothing is deleted
        early = await sweep(settings, demo)
        assert (early.products, early.history) == (0, 0)
        assert all(p.exists() for p in delivered)
        # When a sweep runs after it
        swept = await sweep(settings, demo, now=utcnow() + timedelta(hours=1))
        # Then the delivered product is gone at every site, with its manifest and parity
        assert swept.products == 1 and swept.files == 3 * len(SITES) and swept.bytes > 70_000 * 4
        assert not any(p.exists() for p in delivered)
        assert not list((home / "demo" / "archive").glob("*/delivered.fits*"))
        # And the catalog forgot it (scrub lists no replica of it, so none is "missing")
        assert await catalog.file("delivered.fits") is None
        assert await catalog.replicas(name="delivered.fits") == []
        # And the transfer records older than the store retention are gone too
        assert swept.history == 1 and await catalog.transfers() == []
        # And the product not delivered everywhere is kept, on disk and in the catalog
        assert all(p.exists() for p in pending)
        assert len(await catalog.replicas(name="pending.fits")) == len(SITES)
    finally:
        await catalog.close()


async def test_a_sweep_killed_after_deleting_is_finished_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in the 1-hour campaign on the cluster: retention killed between deleting a
    product's files and forgetting its rows left it catalogued at every site with no
    data; scrubs then marked it missing, so no later sweep chose it again."""
    home = tmp_path / "home"
    settings = _settings(home)
    catalog = await Catalog.open(settings.store.url)
    try:
        # Given a delivered product, and a sweep killed once its files are deleted
        paths = await _replicate(catalog, home, "delivered.fits")

        async def killed(self: Catalog, names: list[str]) -> None:
            raise KeyboardInterrupt("killed before forgetting")

        later = utcnow() + timedelta(hours=1)
        with monkeypatch.context() as patch:
            patch.setattr(Catalog, "forget", killed)
            with pytest.raises(KeyboardInterrupt):
                await sweep(settings, DemoSettings(), now=later)
        assert not any(p.exists() for p in paths)
        # When a site's scrub runs before the next sweep
        events: list[object] = []

        async def emit(event: object) -> None:
            events.append(event)

        site = SITES[0]
        report = await scrub_site(catalog, ops.Recorder(site, catalog, emit), ScrubOptions(site))
        # Then it reports nothing missing or restored: the product is being removed
        assert (report.counts.missing, report.restored) == (0, [])
        assert {r["state"] for r in await catalog.replicas(name="delivered.fits")} == {"retiring"}
        # And the next sweep finishes the removal: nothing catalogued without data
        swept = await sweep(settings, DemoSettings(), now=later)
        assert swept.products == 1
        assert await catalog.replicas(name="delivered.fits") == []
        assert await catalog.file("delivered.fits") is None
    finally:
        await catalog.close()


def test_demo_settings_read_durations(tmp_path: Path) -> None:
    # Given a [demo] table with durations in units, Then they are read as seconds
    config = tmp_path / "stalwart.toml"
    config.write_text('[demo]\nretention = "5m"\nstore_retention = "2h"\nsweep = 30\n')
    demo = load_settings(config, env={}).section("demo", DemoSettings)
    assert (demo.retention, demo.store_retention, demo.sweep) == (300, 7200, 30)


def test_a_meaningless_retention_is_refused_with_the_key_named(tmp_path: Path) -> None:
    config = tmp_path / "stalwart.toml"
    config.write_text('[demo]\nretention = "soon"\n')
    with pytest.raises(ConfigError, match=r"invalid \[demo\] settings: retention"):
        load_settings(config, env={}).section("demo", DemoSettings)


def test_the_sweeper_stops_on_a_bad_table_with_the_configuration_status(tmp_path: Path) -> None:
    # Given a [demo] table that cannot be read, When the sweeper starts
    (tmp_path / "stalwart.toml").write_text('[demo]\nsweep = "often"\n')
    done = subprocess.run(
        [sys.executable, "-m", "stalwart", "demo", "retention"],
        cwd=tmp_path,
        env={**os.environ, "STALWART_CONFIG": str(tmp_path / "stalwart.toml")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it exits 78 (which the watchdog does not restart) with one line naming the key
    assert done.returncode == EX_CONFIG
    assert done.stderr.strip().count("\n") == 0 and "[demo]" in done.stderr
    assert "sweep" in done.stderr
