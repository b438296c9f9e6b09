"""The systemd units in deploy/systemd/ start commands this CLI has, and systemd accepts them.

Commands get regrouped (``stalwart persist`` became ``stalwart store persist``);
a unit naming an old one would fail only on the operator's host. Each unit's
``ExecStart`` is therefore run here with ``--help`` appended (the CLI refuses
an unknown command or option with status 2), every unit goes through
``systemd-analyze verify`` where systemd is installed, and the units shown in
the docs must be these files (and the environment files, deploy/systemd/*.example).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stalwart.config import load_settings

ROOT = Path(__file__).resolve().parents[3]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED_BIN = "/opt/stalwart/.venv/bin/"
THIS_BIN = str(Path(sys.executable).parent) + "/"
SHOWN_EXAMPLE = re.compile(r"```sh\n(# /etc/stalwart/.*?)```", re.S)
SHOWN_UNIT = re.compile(r"```ini\n(# /etc/systemd/system/(\S+)\s.*?)```", re.S)
EXAMPLE_INSTANCE = {"stalwart-integrity-serve@.service": "eu"}  # others: service.env.example


def _unit_files() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def _settings(unit: Path) -> dict[str, list[str]]:
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


def _example_env(name: str = "service.env.example") -> dict[str, str]:
    """The variables of an environment file in deploy/systemd/ (TARGET and ARGS by default)."""
    lines = (UNITS / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _argv(unit: Path) -> list[str]:
    """The unit's ExecStart as this checkout would run it, its variables filled in."""
    (command,) = _settings(unit)["ExecStart"]
    env = _example_env()
    command = command.replace("%i", EXAMPLE_INSTANCE.get(unit.name, "qa"))
    command = re.sub(r"\$\{(\w+)\}", lambda m: shlex.quote(env[m.group(1)]), command)
    command = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], command)
    return shlex.split(command.replace(INSTALLED_BIN, THIS_BIN))


def test_every_long_running_part_has_a_unit() -> None:
    assert {unit.name for unit in _unit_files()} == {
        "stalwart-watchdog.service",
        "stalwart-persist.service",
        "stalwart-dashboard.service",
        "stalwart-ha-monitor.service",
        "stalwart-service@.service",
        "stalwart-ha-replica@.service",
        "stalwart-integrity-serve@.service",
    }


@pytest.mark.parametrize("unit", _unit_files(), ids=lambda unit: unit.name)
def test_exec_start_is_a_command_of_this_cli(unit: Path) -> None:
    argv = _argv(unit)
    assert argv[0].startswith(THIS_BIN), f"{unit.name} runs {argv[0]}, not {INSTALLED_BIN}..."
    done = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{unit.name}: {shlex.join(argv)} is refused:\n{done.stderr}"


@pytest.mark.parametrize("unit", _unit_files(), ids=lambda unit: unit.name)
def test_restarts_stop_at_configuration_errors_and_secrets_come_from_a_file(unit: Path) -> None:
    settings = _settings(unit)
    assert settings["Restart"] == ["always"]
    assert settings["RestartPreventExitStatus"] == ["78"]  # what every stalwart command exits
    assert "-/etc/stalwart/stalwart.env" in settings["EnvironmentFile"]
    assert "STALWART_CONFIG=/etc/stalwart/stalwart.toml" in settings["Environment"][0].split()
    if unit.name != "stalwart-watchdog.service":
        assert settings["User"] == ["stalwart"]
        assert settings["NoNewPrivileges"] == ["yes"] and settings["ProtectSystem"] == ["strict"]


def test_the_watchdog_unit_expects_what_the_watchdog_sends() -> None:
    settings = _settings(UNITS / "stalwart-watchdog.service")
    # sdnotify.Notifier sends READY=1, then WATCHDOG=1 every half WatchdogSec, from the main pid
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert int(settings["WatchdogSec"][0]) > 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
@pytest.mark.parametrize("unit", _unit_files(), ids=lambda unit: unit.name)
def test_systemd_analyze_verify_accepts_the_unit(unit: Path, tmp_path: Path) -> None:
    # Given the unit as installed, its program in this checkout's virtualenv
    (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED_BIN, THIS_BIN))
    name = unit.name.replace("@.", f"@{EXAMPLE_INSTANCE.get(unit.name, 'qa')}.")
    # When systemd checks it (a template through one of its instances)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it has nothing to say, not even a warning
    assert (done.returncode, done.stderr) == (0, "")


def test_units_shown_in_the_docs_are_the_files() -> None:
    shown = 0
    for doc in sorted((ROOT / "docs").glob("*.md")):
        for text, name in SHOWN_UNIT.findall(doc.read_text()):
            assert text == (UNITS / name).read_text(), f"{doc.name} shows an old {name}"
            shown += 1
    assert shown >= 1


def test_the_secrets_file_is_what_stalwart_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the example /etc/stalwart/stalwart.env and no stalwart.toml
    env = _example_env("stalwart.env.example")
    monkeypatch.chdir(tmp_path)
    # When stalwart reads its settings with those variables
    settings = load_settings(None, env=env)
    # Then every one of them is taken, and the store URL is the tested multi-host one
    assert settings.bus.url.count("amqp://stalwart:") == 3
    assert settings.store.url == env["STALWART_STORE_URL"]
    assert f'url = "{settings.store.url}"' in (ROOT / "docs" / "deploy.md").read_text()
    assert settings.security.secret == env["STALWART_JWT_SECRET"]


def test_environment_files_shown_in_the_docs_are_the_examples() -> None:
    examples = {path.read_text().splitlines()[0]: path for path in UNITS.glob("*.example")}
    shown = SHOWN_EXAMPLE.findall((ROOT / "docs" / "deploy.md").read_text())
    assert len(shown) == len(examples)
    for text in shown:
        example = examples.get(text.splitlines()[0])
        assert example is not None and text == example.read_text(), f"deploy.md shows {text!r}"
