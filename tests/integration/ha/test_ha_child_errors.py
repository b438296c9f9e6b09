"""A replica process that cannot reach its store or bus: one line, no password."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

DISPATCHER = "stalwart.demo.services:dispatcher"


def test_an_unreachable_store_is_one_line_without_the_password(tmp_path: Path) -> None:
    # Given a replica whose store (and bus) are a port nobody listens on
    config = tmp_path / "stalwart.toml"
    config.write_text(
        f'home = "{tmp_path}"\n'
        f'[bus]\nurl = "amqp://ops:s3cret-bus@127.0.0.1:1/"\noutbox = "{tmp_path}/o.db"\n'
        '[store]\nurl = "postgresql://ops:s3cret-store@127.0.0.1:1/db"\n'
    )
    # When it has tried for a while and is then stopped
    proc = subprocess.Popen(
        [sys.executable, "-m", "stalwart", "run", "--ha", "-c", str(config), DISPATCHER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(8)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    # Then what went wrong is one error line, with no traceback and no password
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1 and "Traceback" not in err, err
    assert "s3cret" not in out + err
    assert "ops:***@127.0.0.1:1" in err  # it did try, and said where
