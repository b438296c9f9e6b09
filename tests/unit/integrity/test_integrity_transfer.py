"""Verified transfers: the escalation parity -> ranged re-fetch -> retransmission -> failure,
with the bytes each step moved counted."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pytest
from integrity_sizes import BLOCK, SIZE

from stalwart.errors import IntegrityError
from stalwart.integrity.faults import Faults, FaultyChannel
from stalwart.integrity.ingest import IngestOptions, ingest_file
from stalwart.integrity.manifest import MANIFEST_SUFFIX, PARITY_SUFFIX, load_manifest
from stalwart.integrity.transfer import TransferFailed, TransferOptions, transfer_file
from stalwart.integrity.verify import verify_file


def _sidecar_bytes(path: Path) -> int:
    return Path(str(path) + PARITY_SUFFIX).stat().st_size + len(
        Path(str(path) + MANIFEST_SUFFIX).read_bytes()
    )


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".tmp")))


@pytest.fixture
def source(make_file, options: IngestOptions) -> tuple[Path, bytes]:
    path, data = make_file()
    ingest_file(path, options)
    return path, data


def test_clean_transfer_moves_each_byte_once(source, transfer_options, tmp_path: Path) -> None:
    # Given an ingested source, When transferred into a directory
    path, data = source
    out = tmp_path / "dst"
    out.mkdir()
    result = transfer_file(str(path), str(out) + "/", transfer_options)
    # Then it lands under its own name, verified, with its sidecars, nothing re-sent
    target = out / path.name
    assert result.outcome == "transferred" and result.dst == str(target)
    assert target.read_bytes() == data and verify_file(target).ok
    assert result.bytes_moved == SIZE + _sidecar_bytes(path)
    assert result.bytes_refetched == result.bytes_retransmitted == result.blocks_repaired == 0
    assert _leftovers(out) == []


def test_bad_blocks_on_disk_are_repaired_from_parity(source, transfer_options, tmp_path) -> None:
    # Given a destination disk that flips a byte in two blocks of different stripes
    path, data = source
    dst = FaultyChannel(
        str(tmp_path / "dst" / "f.bin"), Faults(write_offsets=frozenset({10, BLOCK * 9}))
    )
    # When transferred
    result = transfer_file(str(path), dst, transfer_options)
    # Then both are rebuilt from parity: nothing re-fetched, nothing retransmitted
    assert result.outcome == "repaired" and result.blocks_repaired == 2
    assert result.bytes_refetched == 0 and result.bytes_retransmitted == 0
    assert (tmp_path / "dst" / "f.bin").read_bytes() == data
    assert verify_file(tmp_path / "dst" / "f.bin").ok


def test_corruption_in_transit_is_caught_while_streaming(
    source, transfer_options, tmp_path
) -> None:
    # Given a source stream that corrupts one byte the first time it is read
    path, data = source
    src = FaultyChannel(str(path), Faults(read_offsets=frozenset({BLOCK * 3 + 1})))
    # When transferred, Then the bad block is repaired from the (verified) parity copy
    result = transfer_file(src, str(tmp_path / "f.bin"), transfer_options)
    assert src.faults.log == ["read"]
    assert result.outcome == "repaired" and result.blocks_repaired == 1
    assert (tmp_path / "f.bin").read_bytes() == data


def test_damage_beyond_parity_refetches_only_the_missing_blocks(
    source, transfer_options, tmp_path
) -> None:
    # Given four bad blocks in one stripe of 4 data + 2 parity
    path, data = source
    offsets = frozenset(BLOCK * i + 3 for i in range(4, 8))
    dst = FaultyChannel(str(tmp_path / "f.bin"), Faults(write_offsets=offsets))
    # When transferred
    result = transfer_file(str(path), dst, transfer_options)
    # Then two blocks come by ranged reads and two from parity; the file is not re-sent
    assert result.outcome == "refetched"
    assert result.blocks_refetched == 2 and result.blocks_repaired == 2
    assert result.bytes_refetched == 2 * BLOCK and result.bytes_retransmitted == 0
    assert result.bytes_moved == SIZE + _sidecar_bytes(path) + 2 * BLOCK
    assert (tmp_path / "f.bin").read_bytes() == data


def test_without_ranges_the_file_is_retransmitted(source, transfer_options, tmp_path) -> None:
    # Given a source that cannot serve ranges and a stripe damaged beyond parity
    path, data = source
    src = FaultyChannel(str(path), Faults(ranges=False))
    offsets = frozenset(BLOCK * i for i in range(0, 3))
    dst = FaultyChannel(str(tmp_path / "f.bin"), Faults(write_offsets=offsets, write_faults=1))
    # When transferred
    result = transfer_file(src, dst, transfer_options)
    # Then the whole file is sent a second time, and that is counted
    assert result.outcome == "retransmitted" and result.attempts == 2
    assert result.bytes_retransmitted == SIZE and result.bytes_refetched == 0
    assert (tmp_path / "f.bin").read_bytes() == data


def test_persistent_damage_fails_clearly_and_leaves_nothing(
    source, transfer_options, tmp_path
) -> None:
    # Given a destination that corrupts every write, beyond parity, and no ranges
    path, _ = source
    src = FaultyChannel(str(path), Faults(ranges=False))
    offsets = frozenset(BLOCK * i for i in range(0, 3))
    out = tmp_path / "dst"
    dst = FaultyChannel(str(out / "f.bin"), Faults(write_offsets=offsets, write_faults=99))
    # When transferred, Then it fails after every retry with a message saying what to do
    with pytest.raises(TransferFailed, match="failed verification after 3 attempt") as caught:
        transfer_file(src, dst, transfer_options)
    result = caught.value.result
    assert result.outcome == "failed" and result.attempts == 3
    assert result.bytes_retransmitted == 2 * SIZE
    assert isinstance(caught.value, IntegrityError)
    # And no unverified file is visible at the destination
    assert not (out / "f.bin").exists() and _leftovers(out) == []


def test_source_without_manifest_gets_one_on_the_way(make_file, transfer_options, tmp_path) -> None:
    # Given a plain file (never ingested) and a disk that corrupts one block
    path, data = make_file()
    dst = FaultyChannel(str(tmp_path / "f.bin"), Faults(write_offsets=frozenset({BLOCK * 2})))
    # When transferred, Then manifest and parity are made from the stream and repair works
    result = transfer_file(str(path), dst, transfer_options)
    assert result.outcome == "repaired" and result.blocks_repaired == 1
    manifest = load_manifest(Path(str(tmp_path / "f.bin") + MANIFEST_SUFFIX))
    assert manifest.size == SIZE and manifest.name == path.name
    assert verify_file(tmp_path / "f.bin").ok and (tmp_path / "f.bin").read_bytes() == data


def test_damaged_source_manifest_is_refused(source, transfer_options, tmp_path) -> None:
    path, _ = source
    side = Path(str(path) + MANIFEST_SUFFIX)
    side.write_bytes(side.read_bytes().replace(b'"size"', b'"sise"'))
    with pytest.raises(IntegrityError, match=r"source manifest .* is damaged"):
        transfer_file(str(path), str(tmp_path / "f.bin"), transfer_options)
    assert not (tmp_path / "f.bin").exists()


def test_copy_onto_itself_is_refused(source, transfer_options) -> None:
    path, data = source
    with pytest.raises(IntegrityError, match="pick another DST"):
        transfer_file(str(path), str(path.parent) + "/", transfer_options)
    assert path.read_bytes() == data


def test_missing_source_is_a_clear_error(tmp_path: Path, transfer_options) -> None:
    with pytest.raises(IntegrityError, match="does not exist"):
        transfer_file(str(tmp_path / "nope"), str(tmp_path / "x"), transfer_options)


def test_fsspec_source_with_ranged_refetch(
    transfer_options: TransferOptions, tmp_path, unique
) -> None:
    # Given a file in an fsspec store (memory://) with its manifest and parity
    data = os.urandom(SIZE)
    local = tmp_path / "seed.bin"
    local.write_bytes(data)
    ingest_file(local, transfer_options.ingest)
    fs = fsspec.filesystem("memory")
    base = f"/{unique}/seed.bin"
    for suffix in ("", MANIFEST_SUFFIX, PARITY_SUFFIX):
        fs.pipe_file(base + suffix, Path(str(local) + suffix).read_bytes())
    try:
        # When transferred to a local disk that damages a stripe beyond parity
        offsets = frozenset(BLOCK * i for i in range(8, 11))
        dst = FaultyChannel(str(tmp_path / "out.bin"), Faults(write_offsets=offsets))
        result = transfer_file(f"memory://{base}", dst, transfer_options)
        # Then the missing block comes by a ranged read from the store
        assert result.outcome == "refetched" and result.bytes_refetched == BLOCK
        assert (tmp_path / "out.bin").read_bytes() == data
    finally:
        fs.rm(f"/{unique}", recursive=True)


def test_remote_destination_is_verified_and_retransmitted_not_patched(
    source, transfer_options, unique
) -> None:
    # Given an fsspec destination (memory://) that corrupts the first copy written to it
    path, data = source
    fs = fsspec.filesystem("memory")
    url = f"memory:///{unique}/out/f.bin"
    dst = FaultyChannel(url, Faults(write_offsets=frozenset({BLOCK + 1})))
    try:
        # When transferred, Then the damage is found by reading the object back, and since
        # remote objects are not patched in place, the file is sent again
        result = transfer_file(str(path), dst, transfer_options)
        assert result.outcome == "retransmitted" and result.bytes_retransmitted == SIZE
        assert fs.cat_file(f"/{unique}/out/f.bin") == data
        assert fs.exists(f"/{unique}/out/f.bin{MANIFEST_SUFFIX}")
        assert not fs.exists(f"/{unique}/out/f.bin.part")
    finally:
        fs.rm(f"/{unique}", recursive=True)


def test_empty_file_round_trip(tmp_path: Path, transfer_options) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    result = transfer_file(str(empty), str(tmp_path / "copy"), transfer_options)
    assert result.outcome == "transferred" and result.size == 0
    assert (tmp_path / "copy").read_bytes() == b"" and verify_file(tmp_path / "copy").ok


def test_unwritable_destination_fails_clearly(source, transfer_options, tmp_path: Path) -> None:
    path, _ = source
    blocker = tmp_path / "file-not-dir"
    blocker.write_bytes(b"")
    with pytest.raises(TransferFailed, match="check the paths, permissions and free space"):
        transfer_file(str(path), str(blocker / "f.bin"), transfer_options)


def test_progress_counts_a_retransmission_afresh(source, transfer_options, tmp_path) -> None:
    # Given a transfer that must send the file twice
    path, _ = source
    src = FaultyChannel(str(path), Faults(ranges=False))
    offsets = frozenset(BLOCK * i for i in range(0, 3))
    dst = FaultyChannel(str(tmp_path / "f.bin"), Faults(write_offsets=offsets, write_faults=1))
    shown: list[int] = []
    # When transferred with a progress bar
    result = transfer_file(src, dst, transfer_options, progress=shown.append)
    # Then the bar ends at the file's size, not at twice it
    assert result.attempts == 2 and sum(shown) == SIZE


def test_a_source_damaged_beyond_its_parity_is_not_retransmitted(
    source, transfer_options, tmp_path
) -> None:
    # Given a source whose own disk copy is damaged beyond its parity
    path, _ = source
    with open(path, "r+b") as f:
        for block in (4, 5, 6):
            f.seek(block * BLOCK)
            f.write(b"\x00\xff")
    # When transferred, Then it fails at once, saying the source is at fault and what to do
    with pytest.raises(TransferFailed, match=r"source .* is damaged: block\(s\) 4-6") as caught:
        transfer_file(str(path), str(tmp_path / "out.bin"), transfer_options)
    assert "--repair" in str(caught.value)
    result = caught.value.result
    assert result.attempts == 1 and result.bytes_retransmitted == 0
    assert _leftovers(tmp_path) == [] and not (tmp_path / "out.bin").exists()
