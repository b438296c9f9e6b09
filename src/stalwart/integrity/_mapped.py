"""A memory map of a file that nobody can cut short while a pass reads it.

Hashing a mapped file skips the copy a read makes out of the page cache, and
that copy costs as much as the hashing (1 GiB: 0.20-0.25 s for ``readinto``
alone, about what BLAKE3 takes). But a file truncated while it is mapped
kills the reader with SIGBUS on the first page past its new end (seen: a
transfer service and the chaos campaign's scrub, when a replica was cut
under them). A read lease (``F_SETLEASE``) closes that door: while it is
held, whoever opens the file for writing or truncates it waits, and the
lease reads as breaking. The pass asks :meth:`LeasedMap.breaking` before
each stripe; when it is, the pass lets the stripes it handed out finish,
then releases the lease and reads the rest into buffers, so the writer waits
a few stripes at most. The kernel ends a lease by force after
``/proc/sys/fs/lease-break-time`` (45 s by default); a stripe takes
milliseconds.

No lease, no map: a file open for writing anywhere, a file neither ours nor
leasable with ``CAP_LEASE``, a file system without leases, or a process that
handles SIGURG (the kernel announces a lease break with that signal, which
is ignored by default) is read into buffers from the start.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import mmap
import os
import signal
import stat
from typing import BinaryIO

__all__ = ["LeasedMap"]

_SIGNAL = signal.SIGURG


class LeasedMap:
    """Zero-copy views of a regular file from its current offset, under a read lease."""

    def __init__(self, reader: BinaryIO, fd: int, start: int, size: int) -> None:
        self._reader = reader
        self._fd = fd
        self._map: mmap.mmap | None = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        self._map.madvise(mmap.MADV_SEQUENTIAL)
        self._whole = memoryview(self._map)
        self._position = start

    @classmethod
    def open(cls, reader: BinaryIO) -> LeasedMap | None:
        """A lease and a map on ``reader``'s file, or None where the pass must read."""
        if not _signal_free():
            return None
        try:
            fd = reader.fileno()
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            fcntl.fcntl(fd, fcntl.F_SETSIG, _SIGNAL)
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except (OSError, AttributeError, io.UnsupportedOperation):
            return None
        try:
            size = os.fstat(fd).st_size  # fixed from here on: nobody may write now
            start = reader.tell()
            if start < size:
                return cls(reader, fd, start, size)
        except (OSError, ValueError):
            pass
        _release(fd)
        return None

    def next(self, want: int) -> memoryview:
        """The next ``want`` bytes (fewer at the end of the file)."""
        view = self._whole[self._position : self._position + want]
        self._position += len(view)
        return view

    def breaking(self) -> bool:
        """Someone waits to write or truncate the file: stop using the map."""
        try:
            return fcntl.fcntl(self._fd, fcntl.F_GETLEASE) != fcntl.F_RDLCK
        except OSError:
            return True

    def close(self) -> None:
        """Release the lease and the map; the reader continues where the views ended.

        Call only when no view handed out is still being read.
        """
        if self._map is None:
            return
        self._whole.release()
        with contextlib.suppress(BufferError):  # a view still referenced: the GC unmaps it
            self._map.close()
        self._map = None
        _release(self._fd)
        self._reader.seek(self._position)


def _signal_free() -> bool:
    """True when the lease-break signal keeps its default (ignore) disposition."""
    return signal.getsignal(_SIGNAL) in (signal.SIG_DFL, signal.SIG_IGN)


def _release(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
