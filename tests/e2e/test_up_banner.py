"""`stalwart up` prints the dashboard's real address, or that it failed, and does
not restart a dashboard whose port another program holds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _up_banner(home: Path, bind: str, wait: float = 60.0) -> str:
    """Start `stalwart up` with the dashboard on ``bind``; its output up to the banner's end."""
    config = home / "stalwart.toml"
    config.write_text(f'[dashboard]\nbind = "{bind}"\n')
    env = {**os.environ, "STALWART_CONFIG": str(config), "COLUMNS": "300"}
    up = subprocess.Popen(
        [sys.executable, "-m", "stalwart", "up"],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("╰"):  # the banner's last line
                time.sleep(2)  # long enough for a restart to show, were there one
                break
    finally:
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=60)
    return "".join(lines) + rest


def test_the_banner_names_the_port_actually_bound(tmp_path: Path) -> None:
    # Given `up` asked for any free port for its dashboard
    output = _up_banner(tmp_path, "127.0.0.1:0")
    # Then the banner shows the port the system chose, the one the dashboard printed
    bound = next(line for line in output.splitlines() if line.startswith("dashboard on "))
    url = bound.split()[2]
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
    assert f"dashboard  {url}" in output
    assert "8321" not in output


def test_a_port_held_by_another_program_is_reported_and_not_retried(tmp_path: Path) -> None:
    # Given another program listening on the dashboard's port
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        # When `up` starts
        output = _up_banner(tmp_path, f"127.0.0.1:{port}")
    # Then the banner says the dashboard failed and why, and prints no address of it
    assert "dashboard  failed (exit code 78, a configuration error" in output
    assert f"http://127.0.0.1:{port}/" not in output
    # And the watchdog gave up at once: one fatal event, no restart, no traceback
    assert "event=fatal program=dashboard" in output
    assert "event=restarted program=dashboard" not in output
    assert "Traceback" not in output
