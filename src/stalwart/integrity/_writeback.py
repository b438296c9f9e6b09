"""Write a large file and have the kernel start putting it on disk as it grows.

An ingest writes 200 MiB of parity per GiB (10+2) and then fsyncs it: left
alone, the kernel writes little of it back before that fsync, which then
waits for all of it after the last stripe (0.1-0.3 s per GiB here). Asking for
write-back of every 64 MiB written (``sync_file_range``, asynchronous)
overlaps the disk with the hashing and encoding still to come; the fsync
then finds little left. Linux only: elsewhere the writes are just writes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import BinaryIO, Final, cast

__all__ = ["WritebackSink"]

_EVERY: Final = 64 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE: Final = 2


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return cast(Callable[[int, int, int, int], int], call)


_START_WRITEBACK: Final = _sync_file_range()


class WritebackSink:
    """Writes each view to ``out`` and starts write-back of every 64 MiB written."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._written = 0
        self._flushed = 0

    def __call__(self, view: memoryview) -> None:
        self._out.write(view)
        self._written += len(view)
        if _START_WRITEBACK is not None and self._written - self._flushed >= _EVERY:
            self._out.flush()
            # best effort: an error here shows again, and is raised, at the fsync
            _START_WRITEBACK(
                self._out.fileno(),
                self._flushed,
                self._written - self._flushed,
                _SYNC_FILE_RANGE_WRITE,
            )
            self._flushed = self._written
