"""scripts/setup.sh installs what each purpose needs: `make run` gets no test tools."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BASH = shutil.which("bash") or "/bin/bash"


def _dry_run(
    tmp_path: Path, *args: str, present: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """The script's dry run on a PATH holding only grep and the ``present`` commands."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "grep").symlink_to(shutil.which("grep") or "/bin/grep")
    for name in present:
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    return subprocess.run(
        [BASH, str(ROOT / "scripts" / "setup.sh"), *args],
        cwd=ROOT,
        env={**os.environ, "PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def _would_install(out: str) -> list[str]:
    [line] = [x for x in out.splitlines() if x.startswith("missing, would install:")]
    return line.partition(":")[2].split()


@pytest.mark.parametrize(
    ("purpose", "packages", "extras"),
    [
        ("run", ["libisal2", "graphviz"], "'.'"),
        ("test", ["libisal2", "graphviz", "chromium", "b3sum", "prometheus"], "'.[test]'"),
        (
            "bench",
            ["libisal2", "graphviz", "chromium", "b3sum", "prometheus", "par2"],
            "'.[test,bench]'",
        ),
    ],
)
def test_each_purpose_installs_only_its_own_packages(
    tmp_path: Path, purpose: str, packages: list[str], extras: str
) -> None:
    # Given a machine with none of the system packages, When setup is asked for a purpose
    done = _dry_run(tmp_path, "--dry-run", purpose)
    # Then it would install exactly that purpose's packages and Python extras
    assert done.returncode == 0, done.stderr
    assert _would_install(done.stdout) == packages
    assert f"pip install -e {extras}" in done.stdout


def test_what_is_present_is_not_installed_again(tmp_path: Path) -> None:
    done = _dry_run(tmp_path, "--dry-run", "test", present=("chromium", "b3sum", "promtool", "dot"))
    assert _would_install(done.stdout) == ["libisal2"]


def test_a_dry_run_changes_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = _dry_run(tmp_path, "--dry-run", "run", "python3.11", str(venv))
    assert done.returncode == 0 and not venv.exists()


def test_without_a_purpose_it_says_how_to_call_it(tmp_path: Path) -> None:
    done = _dry_run(tmp_path, "--dry-run")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "setup: say what for: bash scripts/setup.sh [--dry-run] run|test|bench [PYTHON] [VENV]"
    ]
