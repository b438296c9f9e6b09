"""A file cut short while a pass reads it is reported short, not a crash.

A pass over a memory map died with SIGBUS on the first page past the file's
new end (a transfer service and the chaos campaign's scrub were killed so when
a replica was truncated under them). A pass that copies reads into buffers; one
that does not maps the file only under a read lease, which makes the cut wait
until the pass has let go of the map. Run in a child process: a SIGBUS would
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


_SIZE = 16 * 1024 * 1024


def _pass_in_a_child(code: str, tmp_path: Path) -> list[str]:
    """Run ``code`` over a new 16 MiB file; what it printed, once it ended unharmed."""
    path = tmp_path / "replica.fits"
    path.write_bytes(bytes(range(256)) * (_SIZE // 256))
    child = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, f"killed by signal {-child.returncode}: {child.stderr}"
    return child.stdout.split()


def test_a_file_truncated_during_a_pass_reads_short(tmp_path: Path) -> None:
    # When a 16 MiB file is cut to a quarter while a pass copies it
    (read,) = _pass_in_a_child(_CHILD, tmp_path)
    # Then the pass ends normally, having read less than the whole file
    assert int(read) < _SIZE


_CHILD_MAPPED = """
import os, sys, threading, time
from stalwart.integrity import _pass
from stalwart.integrity._pass import stream_pass

_pass._MAPPED_SLICE = 256 * 1024  # slices of a stripe's size: a 16 MiB file has 64
path = sys.argv[1]
size = os.path.getsize(path)
waited, started = [], []

def cut():
    began = time.monotonic()
    os.truncate(path, size // 4)  # waits while the pass holds its read lease
    waited.append(time.monotonic() - began)

def progress(n):
    if not started:  # after the first stripe: cut, and hold on while the cut waits
        started.append(threading.Thread(target=cut))
        started[0].start()
        time.sleep(0.3)
    else:  # later stripes: read only once the cut is done
        started[0].join()

with open(path, "rb", buffering=0) as reader:
    result = stream_pass(
        reader, block_size=65536, block_algorithm="sha256", file_algorithms=["sha256"],
        stripe_blocks=4, progress=progress, workers=1,
    )
print(result.size, waited[0])
"""


def test_a_file_truncated_during_a_mapped_pass_waits_for_the_map_then_reads_short(
    tmp_path: Path,
) -> None:
    # When a 16 MiB file that a pass without a copy reads (a memory map under a read
    # lease) is cut to a quarter by another thread after the first stripe
    read, waited = _pass_in_a_child(_CHILD_MAPPED, tmp_path)
    # Then the cut waited until the pass gave up the map, and the pass read less, unharmed
    assert int(read) == _SIZE // 4
    assert float(waited) >= 0.25
