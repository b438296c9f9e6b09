"""Fault injection for verified transfers: flipped bytes in transit or on disk.

Used by the tests' corruption matrix and by the demo's chaos mode. A
:class:`FaultyChannel` behaves like a :class:`Channel` but flips chosen
bytes in what it writes (the first ``write_faults`` times), in what it
streams out (the first ``read_faults`` times), or in ranged reads, and can
pretend not to support ranges (like an HTTP server without them).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from stalwart.integrity.channels import Channel

__all__ = ["Faults", "FaultyChannel", "random_faults"]


@dataclass
class Faults:
    """Which bytes to flip, and how many more times (shared by a channel's siblings)."""

    write_offsets: frozenset[int] = frozenset()
    write_faults: int = 1
    read_offsets: frozenset[int] = frozenset()
    read_faults: int = 1
    range_faults: int = 0
    ranges: bool = True
    log: list[str] = field(default_factory=list)


def random_faults(size: int, rng: random.Random, hits: int = 2) -> Faults:
    """Faults that flip ``hits`` random bytes of the first copy written (chaos mode)."""
    offsets = frozenset(rng.randrange(size) for _ in range(hits)) if size > 0 else frozenset()
    return Faults(write_offsets=offsets, write_faults=1)


def _flip(data: bytes | bytearray | memoryview, start: int, offsets: Iterable[int]) -> bytes:
    out = bytearray(data)
    for off in offsets:
        if start <= off < start + len(out):
            out[off - start] ^= 0xFF
    return bytes(out)


class _FlipWriter:
    def __init__(self, inner: BinaryIO, offsets: frozenset[int]) -> None:
        self._inner = inner
        self._offsets = offsets
        self._pos = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        chunk = _flip(data, self._pos, self._offsets)
        self._pos += len(chunk)
        return self._inner.write(chunk)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> _FlipWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


class _FlipReader(_FlipWriter):
    def readinto(self, view: memoryview) -> int:
        n = int(self._inner.readinto(view))  # type: ignore[attr-defined]
        if n:
            view[:n] = _flip(view[:n], self._pos, self._offsets)
            self._pos += n
        return n


class FaultyChannel(Channel):
    """A channel that injects the configured :class:`Faults`."""

    def __init__(self, url: str, faults: Faults | None = None) -> None:
        super().__init__(url)
        self.faults = faults or Faults()
        self.supports_ranges = self.faults.ranges

    def sibling(self, suffix: str) -> Channel:
        # The data's temporary copy shares the faults; sidecars are clean.
        if suffix == ".part":
            return FaultyChannel(self.url + suffix, self.faults)
        return Channel(self.url + suffix)

    def open_write(self) -> BinaryIO:
        inner = super().open_write()
        if self.faults.write_faults <= 0 or not self.faults.write_offsets:
            return inner
        self.faults.write_faults -= 1
        self.faults.log.append("write")
        return cast(BinaryIO, _FlipWriter(inner, self.faults.write_offsets))

    def open_read(self) -> BinaryIO:
        inner = super().open_read()
        if self.faults.read_faults <= 0 or not self.faults.read_offsets:
            return inner
        self.faults.read_faults -= 1
        self.faults.log.append("read")
        return cast(BinaryIO, _FlipReader(inner, self.faults.read_offsets))

    def read_range(self, offset: int, length: int) -> bytes:
        data = super().read_range(offset, length)
        if self.faults.range_faults > 0:
            self.faults.range_faults -= 1
            self.faults.log.append("range")
            return _flip(data, offset, range(offset, offset + len(data), 97))
        return data
