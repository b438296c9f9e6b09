"""Digest algorithms behind one small interface.

BLAKE3 is the default whole-file digest: it is fast, parallel and
cryptographic. The others exist for interoperability with archives that
already record them (md5, sha256, adler32, crc32c). ``xxh3_128`` is the
default per-block digest: blocks only need to localise accidental damage,
and the whole-file BLAKE3 still guards the content cryptographically.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

import blake3
import google_crc32c
import xxhash

from stalwart.errors import ConfigError

__all__ = [
    "ALGORITHMS",
    "DEFAULT_BLOCK_ALGORITHM",
    "DEFAULT_FILE_ALGORITHM",
    "Hasher",
    "check_algorithm",
    "digest_of",
    "new_hasher",
]

DEFAULT_FILE_ALGORITHM: Final = "blake3"
DEFAULT_BLOCK_ALGORITHM: Final = "xxh3_128"


class Hasher(Protocol):
    """What every digest object offers: feed bytes, read the hex digest."""

    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


class _Adler32:
    """zlib's adler32 as a streaming hasher (8 hex digits, big-endian)."""

    def __init__(self) -> None:
        self._value = 1

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._value = zlib.adler32(data, self._value)

    def hexdigest(self) -> str:
        return f"{self._value:08x}"


class _Crc32c:
    """CRC-32C (Castagnoli) as a streaming hasher (8 hex digits, big-endian)."""

    def __init__(self) -> None:
        self._sum: Any = google_crc32c.Checksum()  # type: ignore[no-untyped-call]

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._sum.update(bytes(data) if isinstance(data, memoryview) else data)

    def hexdigest(self) -> str:
        return str(self._sum.digest().hex())


def _blake3() -> Hasher:
    # AUTO lets BLAKE3 hash large updates on several threads (GIL released).
    return cast(Hasher, blake3.blake3(max_threads=blake3.blake3.AUTO))


_FACTORIES: Final[dict[str, Callable[[], Hasher]]] = {
    "blake3": _blake3,
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
    "adler32": _Adler32,
    "crc32c": _Crc32c,
    "xxh3_64": xxhash.xxh3_64,
    "xxh3_128": xxhash.xxh3_128,
}

ALGORITHMS: Final = tuple(_FACTORIES)


def check_algorithm(name: str) -> str:
    """``name`` normalised, or a ConfigError listing the known algorithms."""
    key = name.strip().lower().replace("-", "_")
    if key not in _FACTORIES:
        raise ConfigError(f"unknown digest algorithm {name!r}: use one of {', '.join(ALGORITHMS)}")
    return key


def new_hasher(name: str) -> Hasher:
    """A fresh streaming hasher for algorithm ``name``."""
    return _FACTORIES[check_algorithm(name)]()


def digest_of(name: str, data: bytes | bytearray | memoryview) -> str:
    """The hex digest of ``data`` in one call (single-threaded: used per block)."""
    key = check_algorithm(name)
    hasher = blake3.blake3() if key == "blake3" else _FACTORIES[key]()
    hasher.update(data)
    return hasher.hexdigest()
