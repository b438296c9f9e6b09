"""Any damage pattern: verify finds exactly the damaged blocks, and parity repairs the
file exactly when no stripe lost more blocks than it has parity blocks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.integrity.ingest import IngestOptions, ingest_file
from stalwart.integrity.repair import repair_file
from stalwart.integrity.verify import verify_file

BLOCK = 4096
OPTIONS = IngestOptions(block_size=BLOCK, data_blocks=3, parity_blocks=2, workers=1)


@settings(max_examples=60, deadline=None)
@given(
    blocks=st.integers(1, 14),
    tail=st.integers(0, BLOCK - 1),
    hits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=8),
)
def test_damage_is_localised_and_repaired_when_parity_allows(blocks, tail, hits) -> None:
    size = max(blocks * BLOCK - tail, 1)
    data = os.urandom(size)
    with tempfile.TemporaryDirectory() as tmp:
        # Given an ingested file
        path = Path(tmp) / "f"
        path.write_bytes(data)
        ing = ingest_file(path, OPTIONS)
        # When some bytes are changed
        raw = bytearray(data)
        for where, xor in hits:
            raw[where % size] ^= xor
        path.write_bytes(raw)
        damaged = [
            b
            for b in range(-(-size // BLOCK))
            if raw[b * BLOCK : (b + 1) * BLOCK] != data[b * BLOCK : (b + 1) * BLOCK]
        ]
        # Then verify names exactly the damaged blocks
        report = verify_file(path)
        assert report.bad_blocks == damaged
        assert report.ok == (not damaged)
        # And repair restores the file iff every stripe lost at most 2 blocks
        per_stripe = [sum(1 for b in damaged if b // 3 == s) for s in range(blocks)]
        fixed = repair_file(path, ing.manifest, ing.parity_path, report)
        repairable = max(per_stripe, default=0) <= 2
        assert fixed.complete == repairable
        assert (path.read_bytes() == data) == repairable
