"""The [ha] table: defaults, derived intervals, and clear errors for bad input."""

from __future__ import annotations

import pytest

from stalwart.config import Settings
from stalwart.errors import ConfigError
from stalwart.ha import HaSettings


def test_defaults_give_a_five_second_lease_and_fast_standbys() -> None:
    # Given no [ha] table
    ha = Settings().section("ha", HaSettings)
    # Then the lease is 5 s, renewed every third, and standbys poll every 0.5 s
    assert ha.lease == 5.0
    assert ha.renew_interval == pytest.approx(5.0 / 3)
    assert ha.poll_interval == 0.5
    assert ha.monitors == []


def test_monitors_are_read_from_the_table() -> None:
    settings = Settings.model_validate(
        {
            "ha": {
                "lease": 1.0,
                "monitors": [
                    {"name": "broker", "kind": "amqp", "urls": ["amqp://a/", "amqp://b/"]},
                    {"name": "archive", "kind": "http", "urls": ["http://x/health"]},
                ],
            }
        }
    )
    ha = settings.section("ha", HaSettings)
    assert [m.name for m in ha.monitors] == ["broker", "archive"]
    assert ha.poll_interval == 0.25
    assert ha.monitors[0].suspect_after == 2


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"lease": 0}, "lease"),
        ({"lease": 3, "renew_every": 2}, "renew_every must be under half the lease"),
        ({"monitors": [{"name": "b", "kind": "smtp", "urls": ["x"]}]}, "kind"),
        ({"monitors": [{"name": "b", "kind": "amqp", "urls": []}]}, "urls"),
        ({"monitors": [{"name": "Bad Name", "kind": "amqp", "urls": ["x"]}]}, "name"),
        (
            {"monitors": [{"name": "b", "kind": "amqp", "urls": ["x"]}] * 2},
            "monitor names must be unique",
        ),
        ({"leese": 3}, "leese"),
    ],
)
def test_bad_settings_are_refused_with_the_key_named(
    table: dict[str, object], message: str
) -> None:
    # Given an [ha] table with a mistake
    settings = Settings.model_validate({"ha": table})
    # When it is read, Then a ConfigError names the problem
    with pytest.raises(ConfigError, match=message):
        settings.section("ha", HaSettings)
