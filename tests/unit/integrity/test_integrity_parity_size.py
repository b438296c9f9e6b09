"""Parity is proportional to the data: a small file does not get a stripe's worth of parity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stalwart.integrity.ingest import IngestOptions, ingest_file
from stalwart.integrity.repair import repair_file
from stalwart.integrity.transfer import TransferOptions, transfer_file
from stalwart.integrity.verify import parity_path_of, verify_file

DEFAULTS = IngestOptions(workers=1)  # 4 MiB blocks, 10 data + 2 parity


@pytest.mark.parametrize("size", [1, 5000, 100 * 1024, 1024**2, 3 * 1024**2 + 17])
def test_parity_of_a_small_file_is_a_fifth_of_it(tmp_path: Path, size: int) -> None:
    # Given a file smaller than one stripe of the default options
    path = tmp_path / "small.fits"
    path.write_bytes(os.urandom(size))
    # When it is ingested
    done = ingest_file(path, DEFAULTS)
    # Then its parity is about parity/data of it (page rounding aside), not 8 MiB
    assert done.parity_path is not None
    parity = done.parity_path.stat().st_size
    assert parity <= size * 2 / 10 + 2 * 4096
    assert done.manifest.block_size <= DEFAULTS.block_size


def test_a_file_of_full_stripes_keeps_the_configured_blocks(tmp_path: Path) -> None:
    # Given small configured blocks and a file of exactly two stripes
    options = IngestOptions(block_size=4096, data_blocks=4, parity_blocks=2, workers=1)
    path = tmp_path / "big.fits"
    path.write_bytes(os.urandom(8 * 4096))
    # When it is ingested, Then blocks keep the configured size and parity is 2 per stripe
    done = ingest_file(path, options)
    assert done.manifest.block_size == 4096
    assert done.parity_path is not None and done.parity_path.stat().st_size == 2 * 2 * 4096


def test_a_small_file_with_fitted_blocks_is_still_repaired(tmp_path: Path) -> None:
    # Given a 300 KiB file ingested with the defaults, then two of its blocks damaged
    data = os.urandom(300 * 1024)
    path = tmp_path / "product.fits"
    path.write_bytes(data)
    done = ingest_file(path, DEFAULTS)
    block = done.manifest.block_size
    with path.open("r+b") as f:
        for index in (1, 7):
            f.seek(index * block)
            f.write(b"\xff" * 100)
    report = verify_file(path)
    assert report.bad_blocks == [1, 7]
    # When it is repaired from parity
    repair_file(path, report.manifest, parity_path_of(report.manifest, done.manifest_path), report)
    # Then the file is back, byte for byte
    assert path.read_bytes() == data
    assert verify_file(path).ok


def test_a_transfer_of_a_file_without_manifest_makes_proportional_parity(tmp_path: Path) -> None:
    # Given a 300 KiB file that was never ingested
    src = tmp_path / "src" / "raw.fits"
    src.parent.mkdir()
    src.write_bytes(os.urandom(300 * 1024))
    # When it is transferred (which makes its manifest and parity from the stream)
    result = transfer_file(str(src), str(tmp_path / "dst" / "raw.fits"), TransferOptions())
    # Then its parity is about a fifth of it, and the copy verifies
    parity = tmp_path / "dst" / "raw.fits.stw-parity"
    assert parity.stat().st_size <= 300 * 1024 * 2 / 10 + 2 * 4096
    assert result.manifest is not None and result.manifest.block_size < DEFAULTS.block_size
    assert verify_file(tmp_path / "dst" / "raw.fits").ok
