"""The [dashboard] table, binds, and when a login is required."""

from __future__ import annotations

import secrets
import socket
import tomllib
from pathlib import Path

import pytest

from stalwart.config import Settings
from stalwart.dashboard import DashboardSettings, create_app
from stalwart.dashboard.app import is_loopback
from stalwart.dashboard.auth import hash_password
from stalwart.dashboard.guard import default_hosts
from stalwart.dashboard.server import parse_bind
from stalwart.errors import ConfigError


def test_plain_text_passwords_are_refused_with_a_hint() -> None:
    settings = Settings.model_validate({"dashboard": {"users": {"ops": "hunter2"}}})
    with pytest.raises(ConfigError, match="hash-password"):
        settings.section("dashboard", DashboardSettings)


def test_hashed_users_and_defaults_load() -> None:
    encoded = hash_password("pw", n=2**10)
    settings = Settings.model_validate({"dashboard": {"users": {"ops": encoded}}})
    cfg = settings.section("dashboard", DashboardSettings)
    assert cfg.bind == "127.0.0.1:8321" and cfg.users == {"ops": encoded}
    assert "scrypt" not in repr(cfg)  # hashes stay out of logs


@pytest.mark.parametrize(
    ("bind", "local"),
    [
        ("127.0.0.1:8321", True),
        ("localhost:80", True),
        ("[::1]:8321", True),
        ("0.0.0.0:8321", False),
        ("10.1.2.3:8321", False),
        ("dash.example.org:443", False),
    ],
)
def test_loopback_binds_are_recognised(bind: str, local: bool) -> None:
    assert is_loopback(bind) is local


def test_binds_parse_or_say_how_to_fix_them() -> None:
    assert parse_bind("[::1]:8000") == ("::1", 8000)
    assert parse_bind("0.0.0.0:1") == ("0.0.0.0", 1)
    for bad in ("8321", "host:", ":80", "host:99999", "host:http"):
        with pytest.raises(ConfigError, match="host:port"):
            parse_bind(bad)


def test_a_bus_retry_cap_below_the_first_wait_is_refused_with_a_hint() -> None:
    settings = Settings.model_validate(
        {"dashboard": {"bus_retry_initial": 5.0, "bus_retry_max": 1.0}}
    )
    with pytest.raises(ConfigError, match="raise bus_retry_max"):
        settings.section("dashboard", DashboardSettings)


@pytest.mark.parametrize(
    "weak",
    ["change me", "short", "a" * 40, "change me change me change me change me", "0123" * 10],
)
def test_weak_secrets_are_refused_saying_what_to_set(weak: str) -> None:
    settings = Settings.model_validate({"dashboard": {"secret": weak}})
    with pytest.raises(ConfigError, match=r"secret is too weak.*set \[dashboard\] secret"):
        settings.section("dashboard", DashboardSettings)


def test_a_random_secret_is_accepted() -> None:
    strong = secrets.token_urlsafe(32)
    settings = Settings.model_validate({"dashboard": {"secret": strong}})
    assert settings.section("dashboard", DashboardSettings).secret == strong


def test_default_hosts_are_the_bound_address_and_loopback_names() -> None:
    assert default_hosts("10.1.2.3") == {"10.1.2.3", "localhost", "127.0.0.1", "::1"}
    assert socket.gethostname().lower() in default_hosts("0.0.0.0")
    assert "dash.example.org" in default_hosts("dash.example.org")


def test_allowed_hosts_are_kept_as_the_names_the_host_check_compares() -> None:
    # Given allowed hosts with ports, IPv6 brackets and capitals
    written = ["Dash.Example.org:8321", "[fd00::7]:8321", "[fd00::8]", "fd00::9", "*"]
    # When the settings are loaded
    settings = Settings.model_validate({"dashboard": {"allowed_hosts": written}})
    cfg = settings.section("dashboard", DashboardSettings)
    # Then each is the lower-case name alone
    assert cfg.allowed_hosts == ["dash.example.org", "fd00::7", "fd00::8", "fd00::9", "*"]


@pytest.mark.parametrize("bad", ["", "https://dash.example.org", "dash.example.org/"])
def test_an_allowed_host_that_is_no_name_is_refused_with_a_hint(bad: str) -> None:
    settings = Settings.model_validate({"dashboard": {"allowed_hosts": [bad]}})
    with pytest.raises(ConfigError, match="is not a host name: write the name alone"):
        settings.section("dashboard", DashboardSettings)


def test_a_public_bind_without_users_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"dashboard\.users"):
        create_app(Settings(), bind="0.0.0.0:8321")


def test_the_documented_configuration_is_valid() -> None:
    # Given the [dashboard] example of docs/dashboard.md
    doc = (Path(__file__).parents[3] / "docs" / "dashboard.md").read_text(encoding="utf-8")
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    # Then it parses, every key documented is a real setting, and all of them are documented
    settings = Settings.model_validate(tomllib.loads(example))
    cfg = settings.section("dashboard", DashboardSettings)
    documented = set(
        tomllib.loads(
            example.replace("# login_for_reads", "login_for_reads").replace("# secret", "secret")
        )["dashboard"]
    )
    assert documented == set(DashboardSettings.model_fields)
    assert cfg.bind == "127.0.0.1:8321" and list(cfg.users) == ["ops"]
