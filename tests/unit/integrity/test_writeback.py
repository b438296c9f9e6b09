"""A parity file's write-back starts as it grows; every byte still lands in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stalwart.integrity import _writeback
from stalwart.integrity._writeback import WritebackSink

_MIB = 1024 * 1024


def test_write_back_is_asked_for_each_64_mib_once_it_is_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[int, int, int]] = []

    def start_writeback(fd: int, offset: int, length: int, flags: int) -> int:
        asked.append((offset, length, os.fstat(fd).st_size))
        return 0

    monkeypatch.setattr(_writeback, "_START_WRITEBACK", start_writeback)
    chunks = [bytes([n]) * (24 * _MIB) for n in range(7)]  # 168 MiB
    path = tmp_path / "obs.fits.stw-parity"
    with open(path, "wb") as out:
        sink = WritebackSink(out)
        for chunk in chunks:
            sink(memoryview(chunk))
    assert path.read_bytes() == b"".join(chunks)
    # after 72 MiB and 144 MiB, each range already written to the file when asked
    assert asked == [(0, 72 * _MIB, 72 * _MIB), (72 * _MIB, 72 * _MIB, 144 * _MIB)]


def test_the_kernel_takes_the_write_back_request(tmp_path: Path) -> None:
    if _writeback._START_WRITEBACK is None:
        pytest.skip("no sync_file_range here (not Linux)")
    path = tmp_path / "part"
    path.write_bytes(b"x" * _MIB)
    fd = os.open(path, os.O_RDWR)
    try:
        assert _writeback._START_WRITEBACK(fd, 0, _MIB, 2) == 0
    finally:
        os.close(fd)
