"""Take turns on a temporary name that every writer of one file uses.

Writers of one file's copy or sidecars write under fixed temporary names
(``.part``, ``.stw-parity.tmp``) and rename them into place. Two at once
shared the one file: the second's open truncated what the first had written,
and the first renamed into place what the second was still rewriting (seen
with transfers: a replica catalogued good while cut short). An exclusive
``flock`` of the temporary file makes them take turns. When the holder
renames or removes the name, the waiter's lock is on a file that no longer
bears it, so it opens the name again; the kernel drops a lock with its
process, so a killed writer never blocks the next.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["taking_turns"]


@contextlib.contextmanager
def taking_turns(path: Path) -> Iterator[None]:
    """Hold the temporary name ``path`` for this writer alone until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                named = os.stat(path)
            except FileNotFoundError:
                named = None
        except BaseException:
            os.close(fd)
            raise
        if named is not None and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)  # renamed or removed by the writer we waited for
    try:
        yield
    finally:
        os.close(fd)
