"""Read back what was written, from the disk, while the copy goes on.

A verified transfer must check what reached the destination's disk, not
what is still in memory. Writing everything, syncing, and then reading it
all back doubles the time; instead, on a separate thread and while the next
stripes are still being written, each stripe is made durable
(``fdatasync``), dropped from the page cache, and re-read from the disk.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import BinaryIO

from stalwart.integrity.digests import digest_of

__all__ = ["ReadBack"]


class ReadBack:
    """A sink that writes through ``out`` and digests, block by block, what landed.

    ``from_disk=False`` keeps the data in the page cache: the re-read then
    checks the copy path and the file system but not the disk itself.
    """

    def __init__(
        self,
        out: BinaryIO,
        block_size: int,
        algorithm: str,
        *,
        from_disk: bool = True,
        source: BinaryIO | None = None,
    ) -> None:
        self._out = out
        self._from_disk = from_disk
        # Plain file to plain file: let the kernel copy (copy_file_range), as cp does;
        # the stream still hashes the source and the read-back checks the copy.
        self._source_fd: int | None = None
        if isinstance(source, io.FileIO) and isinstance(out, io.FileIO):
            self._source_fd = source.fileno()
        self._fd = out.fileno()
        self._block = block_size
        self._algorithm = algorithm
        self._offset = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="stw-readback")
        self._jobs: list[Future[list[str]]] = []
        self._buffer = bytearray()  # used by the one re-read thread only
        self.bytes_read = 0

    def __enter__(self) -> ReadBack:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def write(self, view: memoryview) -> None:
        """Write ``view`` (whole blocks, except at the very end), then schedule its check.

        ``view`` is the source's data from the current offset on.
        """
        done = self._copy_in_kernel(len(view))
        if done < len(view):
            if self._source_fd is not None or done:
                self._out.seek(self._offset + done)  # the kernel copy did not move it
            while done < len(view):
                done += self._out.write(view[done:]) or 0
            self._out.flush()
        self._jobs.append(self._pool.submit(self._reread, self._offset, len(view)))
        self._offset += len(view)

    def _copy_in_kernel(self, length: int) -> int:
        """Bytes copied by the kernel from the source at the current offset (maybe 0)."""
        done = 0
        while self._source_fd is not None and done < length:
            at = self._offset + done
            try:
                n = os.copy_file_range(self._source_fd, self._fd, length - done, at, at)
            except OSError:  # not supported here: copy through user space from now on
                self._source_fd = None
                break
            if n == 0:
                break  # the source changed under us: write what was hashed instead
            done += n
        return done

    def _reread(self, offset: int, length: int) -> list[str]:
        os.fdatasync(self._fd)
        if self._from_disk and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._fd, offset, length, os.POSIX_FADV_DONTNEED)
        # One reused buffer: fresh 40 MiB allocations cost a page fault per page.
        if len(self._buffer) < length:
            self._buffer = bytearray(length)
        got = os.preadv(self._fd, [memoryview(self._buffer)[:length]], offset)
        data = memoryview(self._buffer)[:got]
        self.bytes_read += got
        return [
            digest_of(self._algorithm, data[o : o + self._block])
            for o in range(0, len(data), self._block)
        ]

    def digests(self) -> list[str]:
        """Block digests of what is on the disk, in order (waits for the re-reads)."""
        out: list[str] = []
        for job in self._jobs:
            out.extend(job.result())
        return out
