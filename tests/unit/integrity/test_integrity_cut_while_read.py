"""A file cut short while a pass reads it is reported short, not a crash.

A pass over a memory map died with SIGBUS on the first page past the file's
new end (a transfer service and the chaos campaign's scrub were killed so when
a replica was truncated under them). Run in a child process: a SIGBUS would
kill the test runner too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_CHILD = """
import os, sys
from stalwart.integrity._pass import stream_pass

path = sys.argv[1]
size = os.path.getsize(path)
cut = []

def sink(view):
    if not cut:  # after the first stripe, someone cuts the file to a quarter
        os.truncate(path, size // 4)
        cut.append(True)

with open(path, "rb", buffering=0) as reader:
    result = stream_pass(
        reader, block_size=65536, block_algorithm="sha256", file_algorithms=["sha256"],
        stripe_blocks=4, sink=sink, workers=1,
    )
print(result.size)
"""


def test_a_file_truncated_during_a_pass_reads_short(tmp_path: Path) -> None:
    # Given a 16 MiB file
    path = tmp_path / "replica.fits"
    path.write_bytes(bytes(range(256)) * (16 * 4096))
    size = path.stat().st_size
    # When it is cut to a quarter while a pass reads it
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=60
    )
    # Then the pass ends normally, having read less than the whole file
    assert child.returncode == 0, f"killed by signal {-child.returncode}: {child.stderr}"
    assert int(child.stdout) < size
