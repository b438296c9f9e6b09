"""The dashboard benchmark measures every route: a route added without a probe
fails here, not only when someone next runs the benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_benchmark_has_a_probe_for_every_route() -> None:
    # Given the application's routes as FastAPI lists them, and the benchmark's probes
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    # When the benchmark compares them (over a small store of its own)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_dashboard", "--check-routes"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    # Then none is left out
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every route has a probe" in done.stdout
