"""Settings of the [watchdog] table: sizes, signals, groups, and clear errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stalwart.config import load_settings, parse_size
from stalwart.errors import ConfigError
from stalwart.watchdog import ProgramSettings, WatchdogSettings


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512MiB", 512 * 2**20), ("2GB", 2 * 10**9), ("1.5 kib", 1536), (4096, 4096), ("100", 100)],
)
def test_sizes_parse_with_units(text: object, expected: int) -> None:
    assert parse_size(text) == expected


def test_a_bad_size_says_how_to_write_one() -> None:
    with pytest.raises(ValidationError, match="512MiB"):
        ProgramSettings(name="p", command=["x"], max_memory="lots")  # type: ignore[arg-type]


def test_stop_signal_is_normalised_and_checked() -> None:
    assert ProgramSettings(name="p", command=["x"], stop_signal="int").stop_signal == "SIGINT"
    with pytest.raises(ValidationError, match="unknown stop_signal"):
        ProgramSettings(name="p", command=["x"], stop_signal="SIGNOPE")


def test_an_elastic_group_needs_the_queue_it_serves() -> None:
    with pytest.raises(ValidationError, match="needs `service`"):
        ProgramSettings(name="p", command=["x"], max_replicas=4)


def test_program_names_must_be_unique() -> None:
    program = {"name": "p", "command": ["x"]}
    with pytest.raises(ValidationError, match="two programs are named 'p'"):
        WatchdogSettings.model_validate({"programs": [program, program]})


def test_the_table_is_read_from_stalwart_toml(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "stalwart.toml"
    path.write_text(
        '[[watchdog.programs]]\nname = "qa"\ncommand = ["sleep", "9"]\nreplicas = 3\n'
        'max_memory = "1GiB"\nrestart = "always"\n[watchdog.programs.backoff]\ninitial = 2.0\n'
    )
    section = load_settings(path, env={}).section("watchdog", WatchdogSettings)
    (qa,) = section.programs
    assert (qa.replicas, qa.max_memory, qa.restart, qa.backoff.initial) == (3, 2**30, "always", 2.0)
    assert qa.floor == 1 and not qa.elastic


def test_an_unknown_key_is_a_config_error_naming_it(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "stalwart.toml"
    path.write_text('[[watchdog.programs]]\nname = "qa"\ncommand = ["x"]\nrestarts = "always"\n')
    with pytest.raises(ConfigError, match="restarts"):
        load_settings(path, env={}).section("watchdog", WatchdogSettings)


def test_the_watchdog_command_exits_78_on_an_invalid_configuration(tmp_path: object) -> None:
    from pathlib import Path

    from typer.testing import CliRunner

    from stalwart.cli import lazy_app
    from stalwart.errors import EX_CONFIG

    # Given a stalwart.toml that is not TOML
    path = Path(str(tmp_path)) / "stalwart.toml"
    path.write_text("[watchdog\n")
    # When `stalwart watchdog` (as the systemd unit starts it) reads it
    result = CliRunner().invoke(lazy_app(), ["watchdog", "-c", str(path)])
    # Then it exits 78 (systemd: do not restart), saying what is wrong on one line
    assert result.exit_code == EX_CONFIG
    assert result.stderr.startswith(f"error: {path} is not valid TOML")
