"""Where files come from and go to: local paths or any fsspec URL.

A :class:`Channel` is one file at one URL with the few operations a
verified transfer needs: a streaming read, ranged reads (to re-fetch single
blocks), a write to a temporary ``.part`` name that is committed by rename,
and sidecars (manifest, parity) addressed by suffix. Local paths take a
fast path (plain files, ``readinto``, ``pwrite``, dropping the page cache
so that verification reads what reached the disk).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO, cast

from fsspec.core import url_to_fs

from stalwart.errors import IntegrityError

__all__ = ["Channel", "open_channel"]


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


class Channel:
    """One file at ``url``; see the module docstring. Blocking methods."""

    supports_ranges = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.local: Path | None = None
        if _is_local(url):
            self.local = Path(os.path.abspath(os.path.expanduser(url.removeprefix("file://"))))
            self.url = str(self.local) + ("/" if url.endswith("/") else "")
        self._fs: Any = None
        self._path = ""
        if self.local is None:
            try:
                self._fs, self._path = url_to_fs(url)
            except (ImportError, ValueError) as exc:
                raise IntegrityError(
                    f"cannot open {url!r}: {exc}; install the fsspec backend for its scheme"
                ) from None

    def __repr__(self) -> str:
        return f"Channel({self.url!r})"

    @property
    def name(self) -> str:
        return (
            self.local.name if self.local is not None else self._path.rstrip("/").rsplit("/", 1)[-1]
        )

    def sibling(self, suffix: str) -> Channel:
        """The channel of ``url + suffix`` (a sidecar or a temporary name)."""
        return type(self)(self.url + suffix)

    def local_dir(self) -> bool:
        """Whether this names an existing local directory."""
        return self.local is not None and self.local.is_dir()

    def exists(self) -> bool:
        if self.local is not None:
            return self.local.is_file()
        return bool(self._fs.exists(self._path))

    def size(self) -> int:
        if self.local is not None:
            return self.local.stat().st_size
        return int(self._fs.size(self._path))

    def open_read(self) -> BinaryIO:
        if self.local is not None:
            return open(self.local, "rb", buffering=0)
        return cast(BinaryIO, self._fs.open(self._path, "rb", block_size=8 * 1024 * 1024))

    def read_range(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (fewer at the end of the file)."""
        if self.local is not None:
            with open(self.local, "rb", buffering=0) as f:
                return os.pread(f.fileno(), length, offset)
        return bytes(self._fs.cat_file(self._path, start=offset, end=offset + length))

    def read_bytes(self) -> bytes:
        with self.open_read() as f:
            return f.read()

    def open_write(self) -> BinaryIO:
        """Open for writing from scratch (truncating)."""
        if self.local is not None:
            self.local.parent.mkdir(parents=True, exist_ok=True)
            return open(self.local, "w+b", buffering=0)  # readable: the copy is read back
        parent = self._path.rsplit("/", 1)[0]
        if parent:
            self._fs.makedirs(parent, exist_ok=True)
        return cast(BinaryIO, self._fs.open(self._path, "wb"))

    def write_bytes(self, data: bytes) -> None:
        """Write the whole file through a ``.tmp`` name and rename into place."""
        tmp = self.sibling(".tmp")
        with tmp.open_write() as f:
            view, done = memoryview(data), 0
            while done < len(view):
                done += f.write(view[done:]) or 0
            tmp.settle(f)
        tmp.rename(self)

    def settle(self, f: BinaryIO) -> None:
        """Make what was written through ``f`` durable and drop it from the page cache,
        so that a following read comes from the disk, not from memory."""
        f.flush()
        if self.local is not None:
            os.fsync(f.fileno())
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def rename(self, target: Channel) -> None:
        """Move this file onto ``target`` (atomically for local paths)."""
        if self.local is not None and target.local is not None:
            os.replace(self.local, target.local)
        else:
            self._fs.mv(self._path, target._path)

    def remove(self) -> None:
        if self.local is not None:
            self.local.unlink(missing_ok=True)
        elif self._fs.exists(self._path):
            self._fs.rm(self._path)


def open_channel(url: str | Path | Channel) -> Channel:
    """A channel for a path or URL (a Channel is passed through)."""
    if isinstance(url, Channel):
        return url
    return Channel(str(url))
