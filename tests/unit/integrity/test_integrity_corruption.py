"""The corruption matrix on one file: every case detected, repaired where parity allows."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from integrity_sizes import BLOCK, SIZE

from stalwart.integrity.ingest import Ingested, IngestOptions, ingest_file
from stalwart.integrity.repair import repair_file
from stalwart.integrity.verify import VerifyReport, parity_path_of, verify_file


def _flip_bits(path: Path, ing: Ingested) -> None:
    raw = bytearray(path.read_bytes())
    raw[BLOCK * 2 + 7] ^= 0x04
    raw[BLOCK * 9 + 100] ^= 0x80
    path.write_bytes(raw)


def _zero_block(path: Path, ing: Ingested) -> None:
    with open(path, "r+b") as f:
        f.seek(BLOCK * 5)
        f.write(bytes(BLOCK))


def _truncate(path: Path, ing: Ingested) -> None:
    os.truncate(path, BLOCK * 22 + 10)


def _append(path: Path, ing: Ingested) -> None:
    with open(path, "ab") as f:
        f.write(b"\x00junk" * 1000)


def _swap_blocks(path: Path, ing: Ingested) -> None:
    raw = bytearray(path.read_bytes())
    a, b = slice(BLOCK * 1, BLOCK * 2), slice(BLOCK * 6, BLOCK * 7)
    raw[a], raw[b] = raw[b], raw[a]
    path.write_bytes(raw)


def _damage_parity(path: Path, ing: Ingested) -> None:
    assert ing.parity_path is not None
    raw = bytearray(ing.parity_path.read_bytes())
    raw[BLOCK * 3 + 5] ^= 0xFF
    ing.parity_path.write_bytes(raw)


CASES: dict[str, tuple[Callable[[Path, Ingested], None], Callable[[VerifyReport], bool]]] = {
    "flipped bits": (_flip_bits, lambda r: r.bad_blocks == [2, 9]),
    "zeroed block": (_zero_block, lambda r: r.bad_blocks == [5]),
    "truncation": (_truncate, lambda r: r.bad_blocks == [22, 23] and r.size < SIZE),
    "appended bytes": (_append, lambda r: r.extra_bytes == 5000 and not r.bad_blocks),
    "swapped blocks": (_swap_blocks, lambda r: r.bad_blocks == [1, 6]),
    "damaged parity": (_damage_parity, lambda r: r.bad_parity == [3] and r.data_ok),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_detected_and_repaired_from_parity(case: str, make_file, options: IngestOptions) -> None:
    # Given an ingested file
    path, data = make_file()
    ing = ingest_file(path, options)
    damage, expected = CASES[case]
    # When it is damaged
    damage(path, ing)
    report = verify_file(path)
    # Then verification sees exactly that damage
    assert not report.ok
    assert expected(report), report.problems()
    # And repair from parity restores the file and its parity, without any fetch
    fixed = repair_file(path, ing.manifest, ing.parity_path, report)
    assert fixed.complete and fixed.bytes_refetched == 0
    assert verify_file(path).ok
    assert path.read_bytes() == data


def test_damaged_manifest_is_detected_and_not_trusted(make_file, options: IngestOptions) -> None:
    # Given an ingested file whose manifest gets one flipped byte
    path, _ = make_file()
    ing = ingest_file(path, options)
    raw = bytearray(ing.manifest_path.read_bytes())
    raw[40] ^= 0x01
    ing.manifest_path.write_bytes(raw)
    # When verified, Then the manifest itself is reported damaged and nothing passes
    report = verify_file(path)
    assert not report.ok and report.manifest is None
    assert report.manifest_error and "manifest damaged" in report.problems()[0]


def test_damage_beyond_parity_fetches_only_what_parity_cannot_cover(
    make_file, options: IngestOptions
) -> None:
    # Given three zeroed blocks in one stripe of 4 data + 2 parity
    path, data = make_file()
    ing = ingest_file(path, options)
    with open(path, "r+b") as f:
        f.seek(BLOCK * 4)
        f.write(bytes(BLOCK * 3))
    report = verify_file(path)
    assert report.bad_blocks == [4, 5, 6]
    # When repaired with no other copy, Then nothing can be rebuilt (3 losses > 2 parity)
    partial = repair_file(path, ing.manifest, ing.parity_path, report)
    assert partial.unrepairable == [4, 5, 6] and not partial.from_parity
    assert verify_file(path).bad_blocks == [4, 5, 6]
    # When repaired with ranged reads of a good copy, Then exactly one block is fetched
    fetched: list[tuple[int, int]] = []

    def fetch(offset: int, length: int) -> bytes:
        fetched.append((offset, length))
        return data[offset : offset + length]

    with open(path, "r+b") as f:
        f.seek(BLOCK * 4)
        f.write(bytes(BLOCK * 3))
    full = repair_file(path, ing.manifest, ing.parity_path, verify_file(path), fetch=fetch)
    assert full.complete and fetched == [(BLOCK * 4, BLOCK)]
    assert full.refetched == [4] and sorted(full.from_parity) == [5, 6]
    assert full.bytes_refetched == BLOCK and path.read_bytes() == data


def test_a_fetch_returning_bad_data_is_not_written(make_file, options: IngestOptions) -> None:
    path, _ = make_file()
    ing = ingest_file(path, options.model_copy(update={"parity_blocks": 0}))
    with open(path, "r+b") as f:
        f.seek(0)
        f.write(b"\xff" * 10)
    fixed = repair_file(path, ing.manifest, None, verify_file(path), fetch=lambda o, n: bytes(n))
    assert fixed.unrepairable == [0] and not fixed.refetched
    assert verify_file(path).bad_blocks == [0]


def test_repair_reads_only_the_damaged_stripe(make_file, options: IngestOptions) -> None:
    path, _ = make_file()
    ing = ingest_file(path, options)
    _zero_block(path, ing)
    fixed = repair_file(path, ing.manifest, ing.parity_path, verify_file(path))
    assert fixed.from_parity == [5]
    assert fixed.bytes_read <= (options.data_blocks + options.parity_blocks) * BLOCK


def test_missing_file_is_all_bad_and_missing_parity_is_reported(
    make_file, options: IngestOptions
) -> None:
    path, _ = make_file()
    ing = ingest_file(path, options)
    assert ing.parity_path is not None
    ing.parity_path.unlink()
    report = verify_file(path)
    assert report.data_ok and report.bad_parity == list(range(12))
    path.unlink()
    assert verify_file(path).bad_blocks == list(range(24))
    assert parity_path_of(ing.manifest, ing.manifest_path) == ing.parity_path
