"""The parallel run keeps each ``xdist_group`` on one worker (``make test`` relies on it).

The fault suite marks its tests ``xdist_group("chaos")`` in a conftest hook so that
its private brokers, clusters and databases start one after another. When the
installed pytest and pytest-xdist stop honouring that (pytest 9.2 with xdist 3.8:
pytest-xdist issue 1386), nothing fails: the group's tests silently spread over the
workers. This runs a small suite marked the same way and checks where it ran.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

CONFTEST = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.xdist_group("together"))
"""
MODULE = """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_one(n):
    pass
"""


def test_a_group_marked_in_a_conftest_hook_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    for name in ("test_a.py", "test_b.py"):
        (tmp_path / name).write_text(MODULE)
    parallel = ("-n", "2", "--dist", "loadgroup", "-v", "-c", "/dev/null")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *parallel],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    workers = re.findall(r"\[(gw\d+)\] .*PASSED .*@together", run.stdout)
    assert len(workers) == 8, run.stdout
    assert len(set(workers)) == 1, run.stdout
