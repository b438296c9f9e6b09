"""The campaign report: counts by fault kind, a replay command, a readable timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stalwart.chaos.checker import Violation
from stalwart.chaos.journal import Entry
from stalwart.chaos.report import Outcome, write_report
from stalwart.chaos.schedule import FaultKind, Planned

_START = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def _outcome(faults: int) -> Outcome:
    """``faults`` kills and stops in turn, every tenth kill finding no target."""
    journal = []
    for i in range(faults):
        kind = FaultKind.KILL if i % 2 == 0 else FaultKind.STOP
        entry = Entry(i + 1, Planned(i * 5.0, kind, f"p{i % 3}", 2.0))
        if kind is FaultKind.KILL and i % 10 == 0:
            entry.skipped = "no such program"
        else:
            entry.injected_at = _START + timedelta(seconds=i * 5.0)
            entry.healed_at = entry.injected_at + timedelta(seconds=2.0)
        journal.append(entry)
    return Outcome(
        seed=7,
        duration=faults * 5.0,
        gap=5.0,
        interval=2.0,
        started=_START,
        wall=faults * 5.0 + 30,
        journal=journal,
        violations=[Violation("no-duplicate-effect", "m1 ran twice")],
        events=[],
        cannot={},
    )


@pytest.mark.parametrize("faults", [10, 200])
def test_the_report_counts_faults_by_kind_and_says_how_to_replay(
    tmp_path: Path, faults: int
) -> None:
    # When a campaign of short and of many faults is reported
    markdown = write_report(_outcome(faults), tmp_path).read_text()
    # Then a table counts each kind's faults, struck and skipped
    skipped = len(range(0, faults, 10))
    assert f"| kill | {faults // 2 - skipped} | {skipped} |" in markdown
    assert f"| stop | {faults // 2} | 0 |" in markdown
    assert "| leak |" not in markdown  # a kind never planned has no row
    # And the replay command gives the same schedule (its duration and gap) and rate
    assert f"`stalwart chaos --seed 7 --duration {faults * 5}s --gap 5 --interval 2`" in markdown
    assert "FAIL: 1 violation(s)" in markdown
    # And the timeline is drawn
    assert (tmp_path / "timeline.png").stat().st_size > 10_000
