"""Digests agree with known vectors (and with the standard tools: tests/integration/integrity)."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from stalwart.errors import ConfigError
from stalwart.integrity.digests import ALGORITHMS, digest_of, new_hasher
from stalwart.integrity.ingest import IngestOptions, ingest_file

KNOWN = {
    "blake3": "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
    "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    "md5": "900150983cd24fb0d6963f7d28e17f72",
    "adler32": f"{zlib.adler32(b'abc'):08x}",
    "crc32c": "364b3fb7",
}


@pytest.mark.parametrize("algorithm", sorted(KNOWN))
def test_known_vectors(algorithm: str) -> None:
    # Given "abc", When digested in one call and in two updates, Then both give the vector
    assert digest_of(algorithm, b"abc") == KNOWN[algorithm]
    hasher = new_hasher(algorithm)
    hasher.update(b"a")
    hasher.update(memoryview(b"bc"))
    assert hasher.hexdigest() == KNOWN[algorithm]


def test_every_algorithm_is_deterministic_and_sensitive() -> None:
    for algorithm in ALGORITHMS:
        assert digest_of(algorithm, b"x" * 1000) == digest_of(algorithm, b"x" * 1000)
        assert digest_of(algorithm, b"x" * 1000) != digest_of(algorithm, b"x" * 999 + b"y")


def test_unknown_algorithm_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown digest algorithm 'sha3'.*blake3"):
        new_hasher("sha3")


def test_empty_file_digest(tmp_path: Path, options: IngestOptions) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    manifest = ingest_file(empty, options).manifest
    assert manifest.size == 0 and manifest.blocks == []
    assert manifest.digest == digest_of("blake3", b"")
