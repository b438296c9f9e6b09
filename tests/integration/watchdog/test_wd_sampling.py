"""Resource sampling of a real process tree (the probe verdicts are unit-tested)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from stalwart.watchdog.probes import ResourceProbe
from waiting import until_sync


def test_sampling_sums_over_a_real_process_tree() -> None:
    # Given a child process that spins and has a child of its own
    code = "import subprocess, time\np = subprocess.Popen(['sleep', '30'])\nwhile True: pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        probe = ResourceProbe(pid=proc.pid)
        until_sync(
            lambda: probe.sample(time.monotonic()),
            10.0,
            "the spinning child's own child",
            accept=lambda sample: sample.children >= 1,
            interval=0.1,
        )
        time.sleep(0.5)
        # When it is sampled again
        sample = probe.sample(time.monotonic())
        # Then the figures cover both processes and the CPU it burnt
        assert sample.children == 1
        assert sample.threads >= 2 and sample.rss > 1 << 20 and sample.open_files >= 3
        assert sample.cpu > 10.0
    finally:
        for kid in psutil.Process(proc.pid).children(recursive=True):
            kid.kill()
        proc.kill()
        proc.wait()
