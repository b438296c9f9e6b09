"""The systemd units of deploy/systemd/: every part has one, restarts and secrets are
set alike, and what the docs show is these files (and the environment files,
deploy/systemd/*.example). Running their commands is in
tests/integration/cli/test_systemd_units_run.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploy_units import INSTALLED_BIN, ROOT, UNITS, example_env, service_settings, unit_files
from stalwart.config import load_settings

SHOWN_UNIT = re.compile(r"```ini\n(# /etc/systemd/system/(\S+)\s.*?)```", re.S)
SHOWN_EXAMPLE = re.compile(r"```sh\n(# /etc/stalwart/.*?)```", re.S)


def test_every_long_running_part_has_a_unit() -> None:
    assert {unit.name for unit in unit_files()} == {
        "stalwart-watchdog.service",
        "stalwart-persist.service",
        "stalwart-dashboard.service",
        "stalwart-ha-monitor.service",
        "stalwart-service@.service",
        "stalwart-ha-replica@.service",
        "stalwart-integrity-serve@.service",
    }


@pytest.mark.parametrize("unit", unit_files(), ids=lambda unit: unit.name)
def test_restarts_stop_at_configuration_errors_and_secrets_come_from_a_file(unit: Path) -> None:
    settings = service_settings(unit)
    assert settings["Restart"] == ["always"]
    assert settings["RestartPreventExitStatus"] == ["78"]  # what every stalwart command exits
    assert "-/etc/stalwart/stalwart.env" in settings["EnvironmentFile"]
    assert "STALWART_CONFIG=/etc/stalwart/stalwart.toml" in settings["Environment"][0].split()
    if unit.name != "stalwart-watchdog.service":
        assert settings["User"] == ["stalwart"]
        assert settings["NoNewPrivileges"] == ["yes"] and settings["ProtectSystem"] == ["strict"]


@pytest.mark.parametrize("unit", unit_files(), ids=lambda unit: unit.name)
def test_every_unit_starts_a_stalwart_command(unit: Path) -> None:
    # one entry point, so every process reads its settings and logs the same way
    program = service_settings(unit)["ExecStart"][0].split()[0]
    assert program == f"{INSTALLED_BIN}stalwart", f"{unit.name} runs {program}"


def test_the_watchdog_unit_expects_what_the_watchdog_sends() -> None:
    settings = service_settings(UNITS / "stalwart-watchdog.service")
    # sdnotify.Notifier sends READY=1, then WATCHDOG=1 every half WatchdogSec, from the main pid
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert int(settings["WatchdogSec"][0]) > 0


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
    env = example_env("stalwart.env.example")
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
