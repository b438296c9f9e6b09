"""An idle service process: resident memory and CPU, against an idle persist-queue consumer.

stalwart's figure is a whole service as `stalwart up` runs it (`stalwart run
stalwart.demo.services:calibration`: runtime, embedded bus, heartbeats every
second, life-cycle recorder, lease renewal ready). The peer is a process that
waits on persist-queue's SQLiteAckQueue with its blocking `get()`, the way a
persist-queue consumer idles. Target (issue "Performance"): under 50 MiB RSS
(the figures are printed in MiB; the first target, issue "Core backbone", was
80 MB = 76.3 MiB), CPU near 0. Medians of --runs runs.

Run: .venv/bin/python -m benchmarks.bench_idle_service
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

_PEER = """
import sys, persistqueue
queue = persistqueue.SQLiteAckQueue(sys.argv[1], multithreading=True, auto_commit=True)
print("ready", flush=True)
while True:
    item = queue.get(block=True)
    queue.ack(item)
"""


def _measure(
    command: list[str], env: dict[str, str], settle: float, window: float, ready: str
) -> tuple[float, float]:
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        for line in proc.stdout:
            if ready in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not get ready")
        time.sleep(settle)
        meter = psutil.Process(proc.pid)
        meter.cpu_percent(None)
        time.sleep(window)
        return meter.memory_info().rss / 2**20, meter.cpu_percent(None)
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_idle_service", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=float, default=10.0, help="CPU sampling seconds")
    args = parser.parse_args(argv)
    ours, peers = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "stalwart.toml").write_text("")
            env = {
                **os.environ,
                "STALWART_HOME": tmp,
                "STALWART_CONFIG": f"{tmp}/stalwart.toml",
                "STALWART_LOG_LEVEL": "INFO",
            }
            ours.append(
                _measure(
                    [sys.executable, "-m", "stalwart", "run", "stalwart.demo.services:calibration"],
                    env,
                    2.0,
                    args.window,
                    "started patterns=",
                )
            )
            peers.append(
                _measure([sys.executable, "-c", _PEER, f"{tmp}/pq"], env, 2.0, args.window, "ready")
            )
    rss, cpu = statistics.median(r for r, _ in ours), statistics.median(c for _, c in ours)
    prss, pcpu = statistics.median(r for r, _ in peers), statistics.median(c for _, c in peers)
    print(f"idle stalwart service : RSS {rss:6.1f} MiB  CPU {cpu:5.2f}% of a core")
    print(f"idle persist-queue    : RSS {prss:6.1f} MiB  CPU {pcpu:5.2f}% of a core")
    print(f"ratio (stalwart/peer) : RSS {rss / prss:.2f}x  (target: stalwart < 50 MiB)")


if __name__ == "__main__":
    main()
