"""The units of deploy/systemd/ start commands this CLI has, and systemd accepts them.

Commands get regrouped (``stalwart persist`` became ``stalwart store persist``);
a unit naming an old one would fail only on the operator's host. Each unit's
``ExecStart`` is therefore run here with ``--help`` appended (the CLI refuses
an unknown command or option with status 2), and every unit goes through
``systemd-analyze verify`` where systemd is installed.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy_units import INSTALLED_BIN, THIS_BIN, exec_argv, instance, unit_files


@pytest.mark.parametrize("unit", unit_files(), ids=lambda unit: unit.name)
def test_exec_start_is_a_command_of_this_cli(unit: Path) -> None:
    argv = exec_argv(unit)
    assert argv[0].startswith(THIS_BIN), f"{unit.name} runs {argv[0]}, not {INSTALLED_BIN}..."
    done = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{unit.name}: {shlex.join(argv)} is refused:\n{done.stderr}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
@pytest.mark.parametrize("unit", unit_files(), ids=lambda unit: unit.name)
def test_systemd_analyze_verify_accepts_the_unit(unit: Path, tmp_path: Path) -> None:
    # Given the unit as installed, its program in this checkout's virtualenv
    (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED_BIN, THIS_BIN))
    name = unit.name.replace("@.", f"@{instance(unit)}.")
    # When systemd checks it (a template through one of its instances)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it has nothing to say, not even a warning
    assert (done.returncode, done.stderr) == (0, "")
