"""A campaign's demo keeps its store for the whole campaign: the demo's own
retention (1 h by default) deleted the first faults' events of a 1-hour campaign
before the checker read them, which it then reported as unrecorded faults."""

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
