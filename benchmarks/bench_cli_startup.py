"""Cold start-up of the CLI: `stalwart --help`, `stalwart report`, `stalwart send`.

A batch tool calls `stalwart report` many times, so what a command costs
before it does anything matters. Each command runs --runs times as a new
process (its wall time from spawn to exit and its peak RSS from the kernel's
accounting of the reaped child), in a scratch directory on the embedded bus.
Yardsticks: the floor, a plain Python script that does the same with the same
stalwart library modules and nothing else (no CLI framework; for --help, one
that prints the same text); and `celery --help`, a peer CLI. Medians of
--runs. Targets (issue "Operator experience"): --help <= 0.3 s, report/send
<= 0.4 s on an idle machine.

Run: .venv/bin/python -m benchmarks.bench_cli_startup [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_TIME = "/usr/bin/time"  # GNU time (Debian: apt install time)

_REPORT_FLOOR = """
from stalwart.config import load_settings
from stalwart.reporting import report_sync
print(report_sync("info", "bench", source="bench", settings=load_settings(None)))
"""

_SEND_FLOOR = """
import asyncio
from stalwart.bus import open_bus
from stalwart.config import load_settings
from stalwart.envelope import Envelope

async def send() -> None:
    transport = open_bus(load_settings(None))
    await transport.start()
    try:
        await transport.publish([Envelope.new("bench.startup", {}, kind="Message")])
    finally:
        await transport.close()

asyncio.run(send())
"""


def _one(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run of ``command``.

    The peak comes from GNU time, a small parent: a child forked from this
    Python process would report this process's own RSS as its floor.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as peak:
        started = time.monotonic()
        done = subprocess.run(
            [_TIME, "-f", "%M", "-o", peak.name, *command],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"{command} exited {done.returncode}: {done.stderr[-500:]!r}")
        return wall, int(peak.read().split()[-1]) / 1024  # GNU time reports KiB


def _median(command: list[str], runs: int, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    _one(command, cwd, env)  # warm the page cache and .pyc files: "cold" is a new process
    samples = [_one(command, cwd, env) for _ in range(runs)]
    return (
        statistics.median(wall for wall, _ in samples),
        statistics.median(rss for _, rss in samples),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    bindir = Path(sys.executable).parent
    stalwart = [str(bindir / "stalwart")]
    python = [sys.executable, "-c"]
    celery = shutil.which("celery", path=str(bindir))
    help_text = subprocess.run([*stalwart, "--help"], capture_output=True, text=True).stdout
    help_floor = f"import sys; sys.stdout.write({help_text!r})"
    cases: list[tuple[str, list[str], list[str] | None]] = [
        ("--help", [*stalwart, "--help"], [*python, help_floor]),
        ("report", [*stalwart, "report", "-s", "bench", "bench"], [*python, _REPORT_FLOOR]),
        ("send", [*stalwart, "send", "bench.startup", "--json", "{}"], [*python, _SEND_FLOOR]),
        ("celery --help", [celery, "--help"] if celery else [], None),
    ]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.runs} runs")
    print(f"{'command':<16}{'wall s':>9}{'peak MiB':>10}{'floor s':>9}{'floor MiB':>11}")
    with tempfile.TemporaryDirectory(prefix="stw-startup-") as scratch:
        cwd = Path(scratch)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STALWART_")}
        env["STALWART_BUS_URL"] = f"sqlite:///{cwd / 'bus.db'}"
        for name, command, floor in cases:
            if not command:
                print(f"{name:<16} not installed (pip install -e '.[bench]')")
                continue
            wall, rss = _median(command, args.runs, cwd, env)
            row = f"{name:<16}{wall:>9.3f}{rss:>10.1f}"
            if floor is not None:
                floor_wall, floor_rss = _median(floor, args.runs, cwd, env)
                row += f"{floor_wall:>9.3f}{floor_rss:>11.1f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
