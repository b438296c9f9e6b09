"""The demo's batch step: a unit processed again yields the same product."""

from __future__ import annotations

from pathlib import Path

import pytest

from stalwart.demo.batch import main


def test_a_unit_processed_again_yields_the_same_product(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digests = set()
    successes = 0
    for attempt in range(1, 8):
        if main(["uid://A001/X1/Y1", "eu", str(tmp_path), "4", str(attempt)]) == 0:
            successes += 1
            digests.add(capsys.readouterr().out.split()[1])
    assert successes >= 2
    assert len(digests) == 1
