"""When a pass may read a file through a memory map, and what it reads then."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from pathlib import Path

import pytest

from stalwart.integrity._mapped import LeasedMap
from stalwart.integrity._pass import stream_pass

_DATA = bytes(range(256)) * 4096 * 3  # 3 MiB


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "obs.fits"
    path.write_bytes(_DATA)
    return path


def _pass_sha256(path: Path, offset: int = 0) -> tuple[str, int, int]:
    with open(path, "rb", buffering=0) as reader:
        reader.seek(offset)
        seen = stream_pass(
            reader, block_size=65536, block_algorithm="sha256", file_algorithms=["sha256"]
        )
        return seen.digests["sha256"], seen.size, reader.tell()


def test_a_quiet_file_is_mapped_under_a_lease_that_reads_as_held(data: Path) -> None:
    with open(data, "rb", buffering=0) as reader:
        mapped = LeasedMap.open(reader)
        assert mapped is not None
        try:
            assert not mapped.breaking()
            assert bytes(mapped.next(10)) == _DATA[:10]
        finally:
            mapped.close()
        assert reader.tell() == 10  # the reader goes on where the views ended


def test_a_file_open_for_writing_is_read_not_mapped(data: Path) -> None:
    with open(data, "r+b") as writer, open(data, "rb", buffering=0) as reader:
        assert LeasedMap.open(reader) is None
        writer.seek(0)
    # and the pass over it still sees every byte
    assert _pass_sha256(data)[:2] == (hashlib.sha256(_DATA).hexdigest(), len(_DATA))


def test_a_process_that_handles_the_lease_signal_reads_instead(data: Path) -> None:
    previous = signal.signal(signal.SIGURG, lambda signum, frame: None)
    try:
        with open(data, "rb", buffering=0) as reader:
            assert LeasedMap.open(reader) is None
    finally:
        signal.signal(signal.SIGURG, previous)


def test_a_pipe_is_read_not_mapped() -> None:
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(read_end, "rb", buffering=0) as reader:
            assert LeasedMap.open(reader) is None
    finally:
        os.close(write_end)


def test_a_mapped_pass_starts_where_the_reader_stands_and_leaves_it_at_the_end(
    data: Path,
) -> None:
    offset = 1_000_003
    digest, size, position = _pass_sha256(data, offset)
    assert digest == hashlib.sha256(_DATA[offset:]).hexdigest()
    assert (size, position) == (len(_DATA) - offset, len(_DATA))


def test_the_lease_is_given_back_when_the_pass_ends(data: Path) -> None:
    with open(data, "rb", buffering=0) as reader:
        stream_pass(reader, block_size=65536, block_algorithm="sha256", file_algorithms=[])
        # the reader is still open: a lease still held would make a writer wait 45 s
        writer = threading.Thread(target=lambda: open(data, "r+b").close())
        writer.start()
        writer.join(timeout=5)
        assert not writer.is_alive(), "a writer still waits for the pass's read lease"
        writer.join()


@pytest.mark.parametrize("limit", [None, 1_000_003, 2 * 262_144])
def test_a_mapped_pass_over_many_slices_sees_every_byte_up_to_its_limit(
    data: Path, monkeypatch: pytest.MonkeyPatch, limit: int | None
) -> None:
    monkeypatch.setattr("stalwart.integrity._pass._MAPPED_SLICE", 262_144)  # 12 slices
    with open(data, "rb", buffering=0) as reader:
        seen = stream_pass(
            reader,
            block_size=65536,
            block_algorithm="sha256",
            file_algorithms=["sha256"],
            limit=limit,
        )
    expected = _DATA[:limit]
    assert (seen.size, seen.digests["sha256"]) == (
        len(expected),
        hashlib.sha256(expected).hexdigest(),
    )
    assert seen.blocks == [
        hashlib.sha256(expected[o : o + 65536]).hexdigest() for o in range(0, len(expected), 65536)
    ]
