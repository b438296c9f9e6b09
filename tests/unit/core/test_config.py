"""Settings: file, environment and overrides, with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from stalwart.config import SizeError, load_settings, parse_size
from stalwart.errors import ConfigError


def test_defaults_are_embedded_under_home(tmp_path: Path) -> None:
    settings = load_settings(None, env={"STALWART_CONFIG": ""})
    assert settings.bus.url.startswith("sqlite:///") and settings.store.url.startswith("sqlite")


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "stalwart.toml"
    config.write_text('site = "eu"\n[bus]\nurl = "amqp://h/"\nmax_attempts = 3\n')
    settings = load_settings(config, env={"STALWART_BUS_URL": "sqlite:///x.db"})
    assert (settings.site, settings.bus.url, settings.bus.max_attempts) == (
        "eu",
        "sqlite:///x.db",
        3,
    )


def test_home_moves_the_embedded_files(tmp_path: Path) -> None:
    settings = load_settings(None, env={"STALWART_HOME": str(tmp_path / "h")})
    assert settings.bus.url == f"sqlite:///{tmp_path}/h/bus.db"
    assert settings.bus.outbox == f"{tmp_path}/h/outbox.db"


def test_parts_read_their_own_table(tmp_path: Path) -> None:
    class Part(BaseModel):
        interval: float = 1.0

    config = tmp_path / "stalwart.toml"
    config.write_text("[part]\ninterval = 2.5\n[broken]\ninterval = 'soon'\n")
    settings = load_settings(config, env={})
    assert settings.section("part", Part).interval == 2.5
    assert settings.section("absent", Part).interval == 1.0
    with pytest.raises(ConfigError, match=r"\[broken\].*interval"):
        settings.section("broken", Part)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("site = ", "not valid TOML"),
        ("[bus]\nmax_attempts = 0\n", "bus.max_attempts"),
        ("[bus]\nnot_a_key = 1\n", "bus.not_a_key"),
        ("[bus]\nurl = 'localhost:5672'\n", "bus.url.*amqp://host:5672/"),
        ("[bus]\nurl = 'amqp://h:notaport/'\n", "bus.url.*cannot be read"),
        ("[bus]\nurl = 'amqp:///'\n", "bus.url.*names no host"),
        ("[store]\nurl = 'sqlite://'\n", "store.url.*names no file"),
        ("[store]\nurl = 'postgresql://[::1/db'\n", "store.url.*cannot be read"),
        ("[bus]\nurl = 'amqp://a:pw@h1/,kafka://b:pw@h2/'\n", "'kafka://b:\\*\\*\\*@h2/'"),
        ("[store]\nurl = 'mongodb://h/db'\n", "store.url.*postgresql://host/db"),
        ("[security]\nsecret = 'abcdef'\n", "secret is 6 bytes; HS256 needs at least 32"),
        ("log_level = 'LOUD'\n", "log_level"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "stalwart.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, env={})


def test_a_named_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", env={})


def test_a_directory_for_a_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path, env={})


def test_a_long_secret_and_a_lower_case_level_are_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./stalwart.toml
    env = {"STALWART_JWT_SECRET": "x" * 32, "STALWART_LOG_LEVEL": "debug"}
    settings = load_settings(None, env=env)
    assert settings.log_level == "DEBUG" and settings.security.secret == "x" * 32


@pytest.mark.parametrize("text", ["inf", "nan", "1e400", "-4MiB", "0"])
def test_a_size_that_is_no_number_of_bytes_is_refused(text: str) -> None:
    with pytest.raises(SizeError):
        parse_size(text)


def test_a_refused_variable_is_named(tmp_path: Path) -> None:
    # Given an empty file and a bus URL from the environment that names no host
    (tmp_path / "stalwart.toml").write_text("")
    env = {"STALWART_BUS_URL": "amqp://"}
    # When the settings are read, Then the error names the variable, not only the file
    with pytest.raises(ConfigError, match=r"with STALWART_BUS_URL: bus\.url: .*names no host"):
        load_settings(tmp_path / "stalwart.toml", env=env)
