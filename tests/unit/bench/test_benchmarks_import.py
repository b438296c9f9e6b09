"""Every benchmark imports: ``make bench`` runs them all, and one that no longer
imports (a name it used was removed) ended the whole run before this check existed."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# The peers the bench extras install (`make bench`); `make test` does not.
_PEER_PACKAGES = {"persistqueue", "faststream", "supervisor", "celery"}

_BENCHMARKS = sorted(
    info.name
    for info in pkgutil.iter_modules([str(ROOT / "benchmarks")])
    if info.name.startswith("bench_")
)


def test_every_benchmark_module_is_found() -> None:
    assert {"bench_embedded_bus", "bench_failover", "bench_store"} <= set(_BENCHMARKS)


@pytest.mark.parametrize("name", _BENCHMARKS)
def test_a_benchmark_imports_with_only_its_peers_missing(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # as `python -m benchmarks` from the repository
    try:
        module = importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        # Only a peer of the bench extras may be missing in the test environment.
        assert (exc.name or "").partition(".")[0] in _PEER_PACKAGES, exc
        return
    assert callable(module.main)
