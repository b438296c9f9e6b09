"""`stalwart up --demo` as a new user runs it: every unit is delivered, the
store has seen it all, and Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
UNITS = 4


def delivered(store: Path) -> int:
    if not store.exists():
        return 0
    query = (
        "SELECT count(DISTINCT json_extract(body, '$.ous')) FROM messages "
        "WHERE topic = 'ous.state' AND json_extract(body, '$.state') = 'Delivered'"
    )
    try:
        with sqlite3.connect(store) as conn:
            return int(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_demo_delivers_every_unit_and_stops_cleanly(tmp_path: Path) -> None:
    (tmp_path / "stalwart.toml").write_text("")
    env = {**os.environ, "STALWART_CONFIG": str(tmp_path / "stalwart.toml")}
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stalwart",
            "up",
            "--demo",
            "--no-dashboard",
            "--units",
            str(UNITS),
            "--interval",
            "0.2",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    children: list[psutil.Process] = []
    try:
        store = tmp_path / ".stalwart" / "store.db"
        deadline = time.monotonic() + 150
        while delivered(store) < UNITS:
            assert up.poll() is None, up.stdout.read() if up.stdout else ""
            assert time.monotonic() < deadline, f"only {delivered(store)}/{UNITS} delivered"
            time.sleep(0.5)
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 16  # persist, 2 dispatchers, 4 pipelines, 4 transfers, ...
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=90)
    assert up.returncode == 0, out[-3000:]
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left running: {[p.pid for p in alive]}"
    assert "stopping" in out
    # And every unit's product was replicated, verified, to the three other sites
    replicas = list((tmp_path / ".stalwart" / "demo" / "archive").glob("*/*.fits"))
    assert len(replicas) == UNITS * 3
    assert all(r.with_name(r.name + ".stw-manifest.json").exists() for r in replicas)
