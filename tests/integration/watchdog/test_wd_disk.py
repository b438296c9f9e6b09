"""The watchdog warns before a data directory's disk fills: ``disk_low``, then ``disk_ok``."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from wd_support import Recorder

from stalwart.cli._stack import stack
from stalwart.config import load_settings
from stalwart.events import event_envelope
from stalwart.watchdog import Watchdog, WatchdogSettings
from stalwart.watchdog._disk import watch_disk
from stalwart.watchdog.config import DiskSettings
from stalwart.watchdog.probes import DiskProbe


def _above_free(path: Path) -> int:
    """A threshold the disk of ``path`` cannot meet: more than it has free."""
    return shutil.disk_usage(path).free + 2**30


def test_probe_is_quiet_with_room_and_speaks_below_its_threshold(tmp_path: Path) -> None:
    data = tmp_path / "store" / "not-created-yet.db"
    # Given a limit far below what is free, Then nothing is reported
    roomy = DiskProbe(DiskSettings(paths=[data], min_free=1, min_free_percent=0))
    assert roomy.check() == [(str(data), None)]
    # Given a limit above the free space, Then a disk verdict names the path and the figures
    full = DiskProbe(DiskSettings(paths=[data, tmp_path], min_free=_above_free(tmp_path)))
    [(where, verdict)] = full.check()  # both paths are on one file system: one check
    assert where == str(data) and verdict is not None and verdict.kind == "disk"
    assert verdict.evidence["free"] < verdict.evidence["min_free"]
    assert str(data) in verdict.reason and "free space" in verdict.reason


async def test_watchdog_raises_disk_low_once_below_its_threshold(tmp_path: Path) -> None:
    # Given a watchdog whose disk threshold is above the free space of its data directory
    limit = _above_free(tmp_path)
    disk = DiskSettings(paths=[tmp_path], min_free=limit, min_free_percent=0, interval=0.05)
    watchdog = Watchdog(WatchdogSettings(disk=disk), socket_path=tmp_path / "wd.sock")
    recorder = Recorder()
    watchdog.add_listener(recorder)
    await watchdog.start()
    try:
        # When it runs, Then it raises a disk_low alarm, once (repeat is 10 minutes)
        [low] = await recorder.wait_kind("disk_low", program="disk")
        assert low.alarm and low.evidence["min_free"] == limit
        assert event_envelope(low, "watchdog@local").topic == "sys.watchdog.disk_low"
        await asyncio.sleep(0.3)
        assert len(recorder.of("disk_low")) == 1
    finally:
        await watchdog.close()


async def test_disk_ok_follows_once_there_is_room_again(tmp_path: Path) -> None:
    # Given a disk reported low
    low = DiskSettings(paths=[tmp_path], min_free=_above_free(tmp_path), interval=0.05)
    probe = DiskProbe(low)
    recorder = Recorder()
    task = asyncio.create_task(watch_disk(probe, recorder, "watchdog"))
    try:
        await recorder.wait_kind("disk_low")
        # When space is back (here: the limit lowered), Then disk_ok is published
        probe.settings = low.model_copy(update={"min_free": 1, "min_free_percent": 0.0})
        [ok] = await recorder.wait_kind("disk_ok", program="disk")
        assert not ok.alarm and str(tmp_path) in ok.reason
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_up_watches_its_data_directories(tmp_path: Path) -> None:
    # Given the embedded defaults under a home, When `stalwart up` builds its table
    settings = load_settings(env={"STALWART_HOME": str(tmp_path / "home")})
    table = stack(settings, demo_workflow=False, dashboard=False)
    # Then the disk of the home (bus, store, outbox, demo data) is watched
    assert table.disk.paths == [(tmp_path / "home").absolute()]
