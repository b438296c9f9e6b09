"""bench_effectively_once keeps working: its child measures a tiny run on the
embedded bus, and a bad ``--baseline`` is refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _benchmark(*args: str, src: Path = ROOT / "src") -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.<args>`` from the repository, with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90
    )


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "plain"])
def test_the_child_acks_every_preloaded_message_and_reports_a_rate(
    tmp_path: Path, idempotent: bool
) -> None:
    # Given a fresh embedded bus and store, when the child measures 50 messages
    done = _benchmark(
        "benchmarks._effectively_once_child",
        *("--bus-url", f"sqlite:///{tmp_path}/bus.db", "--store-url", f"sqlite:///{tmp_path}/s.db"),
        *("--home", str(tmp_path), "--count", "50", "--timeout", "60"),
        *(["--idempotent"] if idempotent else []),
    )
    assert done.returncode == 0, done.stderr
    # Then it acked all 50, left none in the queue, ran this tree's code and timed it
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["consumed"] == 50
    assert measured["left"] == 0
    assert Path(measured["stalwart"]).is_relative_to(ROOT / "src")
    assert measured["seconds"] > 0
    assert measured["rate"] == pytest.approx(50 / measured["seconds"])


def test_an_unknown_baseline_is_refused_in_one_line() -> None:
    done = _benchmark("benchmarks.bench_effectively_once", "--baseline", "no-such-ref-4711")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "'no-such-ref-4711' is no commit here" in last
    assert "Traceback" not in done.stderr
