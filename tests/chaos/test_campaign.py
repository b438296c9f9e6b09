"""A short seeded chaos campaign against the demo: every fault kind this host can
inject strikes at least once, and every invariant holds (``stalwart chaos``)."""

from __future__ import annotations

import glob
import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from harness import FULL

from stalwart.chaos.campaign import CampaignOptions, run_campaign
from stalwart.chaos.leftovers import Record, records_dir
from stalwart.chaos.schedule import FaultKind
from stalwart.dev.rabbitmq import RABBITMQ_BIN

RABBITMQ_SERVER = RABBITMQ_BIN / "rabbitmq-server"
PG_CTL = "/usr/lib/postgresql/*/bin/pg_ctl"

_PROCESS_FAULTS = {
    FaultKind.KILL,
    FaultKind.STOP,
    FaultKind.LEAK,
    FaultKind.SLOW_PIPELINE,
    FaultKind.CORRUPT_TRANSFER,
    FaultKind.TRUNCATE_TRANSFER,
}


def _leftovers(root: Path, tag: str | None) -> list[str]:
    """Processes, mounts, namespaces, links and the record of the campaign still there
    after it returned (other campaigns may run on this host at the same time: theirs
    are not counted)."""
    found = [
        f"process {p.pid}: {' '.join(p.info['cmdline'] or [])}"
        for p in psutil.process_iter(["cmdline", "environ"])
        if str(root) in " ".join(p.info["cmdline"] or [])
        or str(root) in str((p.info["environ"] or {}).get("STALWART_CONFIG", ""))
    ]
    mounts = subprocess.run(["mount"], capture_output=True, text=True).stdout
    found += [line for line in mounts.splitlines() if str(root) in line]
    for command in (["ip", "netns", "list"], ["ip", "-o", "link"]):
        listed = subprocess.run(command, capture_output=True, text=True).stdout
        found += [line for line in listed.splitlines() if tag and f"{tag}-" in line]
    found += [
        f"record {path}"
        for path in records_dir().glob("*.json")
        if Record.loads(path.read_text()).pid == os.getpid()
    ]
    return found


@pytest.mark.timeout(300)
async def test_a_short_campaign_strikes_every_kind_and_breaks_no_invariant(
    tmp_path: Path,
) -> None:
    report = tmp_path / "report"
    options = CampaignOptions(
        seed=5, duration=42.0, report=report, gap=6.0, settle=60.0, sites=False
    )
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
    assert _leftovers(tmp_path, outcome.sites_tag) == []


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="about 4 minutes: run by `make chaos` (STALWART_CHAOS_FULL=1)")
@pytest.mark.timeout(600)
# The broker's VM, started again after its loss, outlives the Popen that launched it.
@pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning")
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
@pytest.mark.skipif(not RABBITMQ_SERVER.exists(), reason="no RabbitMQ server for the sites' hub")
@pytest.mark.skipif(not glob.glob(PG_CTL), reason="no PostgreSQL server for the sites' store")
async def test_a_campaign_across_sites_survives_wan_cuts_broker_and_store_loss(
    tmp_path: Path,
) -> None:
    report = tmp_path / "report"
    network = {
        FaultKind.WAN_CUT,
        FaultKind.BROKER_NODE_LOSS,
        FaultKind.BROKER_PARTITION,
        FaultKind.POSTGRES_RESTART,
    }
    options = CampaignOptions(
        seed=8,
        duration=60.0,
        report=report,
        gap=12.0,
        settle=120.0,
        kinds=frozenset({*network, FaultKind.KILL}),
    )

    outcome = await run_campaign(options, say=print)

    injected = {entry.planned.kind for entry in outcome.journal if entry.injected_at}
    assert network <= injected, [e.skipped for e in outcome.journal if e.skipped]
    assert outcome.violations == []
    assert outcome.sites_tag is not None
    assert _leftovers(tmp_path, outcome.sites_tag) == []
