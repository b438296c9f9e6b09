"""A short seeded chaos campaign against the demo: every fault kind this host can
inject strikes at least once, and every invariant holds (``stalwart chaos``)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from stalwart.chaos.campaign import CampaignOptions, run_campaign
from stalwart.chaos.schedule import FaultKind

_PROCESS_FAULTS = {
    FaultKind.KILL,
    FaultKind.STOP,
    FaultKind.LEAK,
    FaultKind.SLOW_PIPELINE,
    FaultKind.CORRUPT_TRANSFER,
    FaultKind.TRUNCATE_TRANSFER,
}


def _leftovers(root: Path) -> list[str]:
    """Processes and mounts of the campaign still there after it returned."""
    found = [
        f"process {p.pid}: {' '.join(p.info['cmdline'] or [])}"
        for p in psutil.process_iter(["cmdline", "environ"])
        if str(root) in " ".join(p.info["cmdline"] or [])
        or str(root) in str((p.info["environ"] or {}).get("STALWART_CONFIG", ""))
    ]
    mounts = subprocess.run(["mount"], capture_output=True, text=True).stdout
    return found + [line for line in mounts.splitlines() if str(root) in line]


@pytest.mark.timeout(300)
async def test_a_short_campaign_strikes_every_kind_and_breaks_no_invariant(
    tmp_path: Path,
) -> None:
    report = tmp_path / "report"
    options = CampaignOptions(seed=5, duration=42.0, report=report, gap=6.0, settle=60.0)
    began = time.monotonic()

    outcome = await run_campaign(options, say=print)

    print(f"short campaign: {time.monotonic() - began:.0f}s wall")
    planned = {entry.planned.kind for entry in outcome.journal}
    injected = {entry.planned.kind for entry in outcome.journal if entry.injected_at}
    expected = _PROCESS_FAULTS | ({FaultKind.DISK_FULL} if os.geteuid() == 0 else set())
    assert planned == injected == expected, [e.skipped for e in outcome.journal if e.skipped]
    assert outcome.violations == []
    assert "PASS" in (report / "report.md").read_text()
    assert (report / "timeline.png").stat().st_size > 10_000
    assert _leftovers(tmp_path) == []
