"""`stalwart store persist` started while its store is down waits for it (saying so)
instead of exiting into its watchdog's restarts, and a SIGTERM ends the wait."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_store_down_at_start_is_waited_for(tmp_path: Path) -> None:
    config = tmp_path / "stalwart.toml"
    config.write_text(
        f'[bus]\nurl = "sqlite:///{tmp_path}/bus.db"\n'
        f'[store]\nurl = "postgresql://postgres@127.0.0.1:{_closed_port()}/absent"\n'
    )
    env = {**os.environ, "STALWART_CONFIG": str(config), "STALWART_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stalwart", "store", "persist"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(4.0)
        # It is still there, waiting
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "the persister's store cannot start yet: cannot reach the store" in out, out
    assert proc.returncode == 0, out
