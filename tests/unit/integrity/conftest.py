"""Small files and small blocks so the integrity tests stay fast."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from integrity_sizes import BLOCK, SIZE

from stalwart.integrity.ingest import IngestOptions
from stalwart.integrity.transfer import TransferOptions


@pytest.fixture
def options() -> IngestOptions:
    return IngestOptions(block_size=BLOCK, data_blocks=4, parity_blocks=2)


@pytest.fixture
def transfer_options(options: IngestOptions) -> TransferOptions:
    return TransferOptions(ingest=options, retries=2, backoff_initial=0.01, backoff_max=0.05)


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[..., tuple[Path, bytes]]:
    def make(name: str = "data.bin", size: int = SIZE, folder: str = "src") -> tuple[Path, bytes]:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        path = root / name
        path.write_bytes(data)
        return path, data

    return make
