"""The systemd units of deploy/systemd/ as the tests read them.

Shared by the static checks (tests/unit/dev/test_systemd_units.py) and the
ones that run the units' commands and ``systemd-analyze``
(tests/integration/cli/test_systemd_units_run.py).
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED_BIN = "/opt/stalwart/.venv/bin/"
THIS_BIN = str(Path(sys.executable).parent) + "/"
_EXAMPLE_INSTANCE = {"stalwart-integrity-serve@.service": "eu"}  # others: service.env.example


def unit_files() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def instance(unit: Path) -> str:
    """The instance the tests give a template: a site, or the service of service.env.example."""
    return _EXAMPLE_INSTANCE.get(unit.name, "qa")


def service_settings(unit: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of the unit's ``[Service]`` section (keys may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in unit.read_text().splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def example_env(name: str = "service.env.example") -> dict[str, str]:
    """The variables of an environment file in deploy/systemd/ (TARGET and ARGS by default)."""
    lines = (UNITS / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def exec_argv(unit: Path) -> list[str]:
    """The unit's ExecStart as this checkout would run it, its variables filled in."""
    (command,) = service_settings(unit)["ExecStart"]
    env = example_env()
    command = command.replace("%i", instance(unit))
    command = re.sub(r"\$\{(\w+)\}", lambda m: shlex.quote(env[m.group(1)]), command)
    command = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], command)
    return shlex.split(command.replace(INSTALLED_BIN, THIS_BIN))
