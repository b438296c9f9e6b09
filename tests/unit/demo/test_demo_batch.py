"""The demo's batch step: a unit processed again yields the same product."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from stalwart.cli import lazy_app
from stalwart.demo.batch import process


def _batch(outdir: Path, attempt: int) -> tuple[int, str, str]:
    args = ["demo", "batch", "uid://A001/X1/Y1", "eu", str(outdir), "--size-kib=4"]
    args.append(f"--attempt={attempt}")
    result = CliRunner().invoke(lazy_app(), args)
    return result.exit_code, result.stdout, result.stderr


def test_a_unit_processed_again_yields_the_same_product(tmp_path: Path) -> None:
    digests = set()
    problems = 0
    for attempt in range(1, 16):
        status, out, err = _batch(tmp_path, attempt)
        if status == 0:
            path, digest = out.split()
            assert Path(path).stat().st_size == 4 * 1024
            digests.add(digest)
        else:
            # a simulated processing problem: status 3, the reason on stderr
            assert (status, err.strip()) == (3, "calibration diverged for uid://A001/X1/Y1")
            problems += 1
    assert len(digests) == 1
    assert problems < 15


def test_a_problem_is_transient_a_rerun_converges(tmp_path: Path) -> None:
    units = [f"uid://A001/X{n:x}/Y1" for n in range(200)]
    diverged = [ous for ous in units if process(ous, "eu", tmp_path, 1, attempt=1) is None]
    assert 5 <= len(diverged) <= 40  # about one first attempt in twelve
    for ous in diverged:
        assert all(process(ous, "eu", tmp_path, 1, attempt=n) for n in (2, 3, 4))


def test_a_meaningless_attempt_is_a_usage_error(tmp_path: Path) -> None:
    status, _, err = _batch(tmp_path, 0)
    assert status == 2 and "--attempt" in err
    assert not list(tmp_path.iterdir())
