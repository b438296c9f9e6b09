"""`stalwart chaos --reap-only` removes what a killed campaign left, and starts none."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stalwart.chaos import leftovers
from stalwart.chaos.leftovers import Record
from stalwart.cli import build_app


def test_reap_only_removes_a_dead_campaigns_record_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the record of a campaign whose process is gone (it listed nothing yet)
    monkeypatch.setattr(leftovers, "records_dir", lambda: tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()
    record = tmp_path / "ch0bad.json"
    record.write_text(Record("ch0bad", gone.pid, 0.0).dumps())
    app = build_app()
    # When the reaper alone runs
    first = CliRunner().invoke(app, ["chaos", "--reap-only"])
    # Then it says what it removed, and the record is gone
    assert first.exit_code == 0, first.output
    assert f"removed leftovers of a campaign that was killed: ch0bad (pid {gone.pid})" in (
        first.output
    )
    assert not record.exists()
    # And a second run finds nothing
    second = CliRunner().invoke(app, ["chaos", "--reap-only"])
    assert second.exit_code == 0, second.output
    assert "no leftovers of a killed campaign" in second.output
