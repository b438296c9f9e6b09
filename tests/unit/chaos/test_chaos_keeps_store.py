"""A campaign's demo keeps its store for the whole campaign: the demo's own
retention (1 h by default) deleted the first faults' events of a 1-hour campaign
before the checker read them, which it then reported as unrecorded faults. And it
keeps delivered products no longer than the sites' disks hold at a unit a second:
with the demo's 10 minutes every site's 128 MiB disk filled up."""

from __future__ import annotations

from pathlib import Path

from stalwart.chaos.system import SystemSpec
from stalwart.config import load_settings
from stalwart.demo.retention import DemoSettings


def test_the_demo_of_a_campaign_prunes_nothing_younger_than_the_campaign(
    tmp_path: Path,
) -> None:
    spec = SystemSpec(root=tmp_path, keep_store_for=2 * (3600 + 120))
    spec.write_config()

    demo = load_settings(spec.config, env={}).section("demo", DemoSettings)

    assert demo.store_retention == 7440.0
    # about 7 minutes of products fit on a site's disk: kept at most 2.5 minutes
    assert demo.retention + demo.sweep <= 150.0
