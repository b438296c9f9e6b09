"""Commands that read the bus or the store, run outside the system's directory,
say where they looked instead of creating an empty bus, store and home there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

READERS = [
    ["status"],
    ["messages"],
    ["show", "0123abcd"],
    ["reports"],
    ["dlq", "list"],
    ["watchdog", "status"],
    ["ha", "status"],
]


@pytest.mark.parametrize("command", READERS, ids=lambda c: " ".join(c))
def test_a_reading_command_in_an_empty_directory_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STALWART_")}
    done = subprocess.run(
        [sys.executable, "-m", "stalwart", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nothing has been recorded here" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
