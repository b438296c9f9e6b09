"""Child processes for the embedded bus's multi-process tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _procs import Spawn

WORKER = Path(__file__).with_name("_worker.py")


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """``spawn("consume", url, queue, out, ...)`` starts a worker; all are killed after."""
    started: list[subprocess.Popen[bytes]] = []

    def run(*args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, str(WORKER), *args], env=env)
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
