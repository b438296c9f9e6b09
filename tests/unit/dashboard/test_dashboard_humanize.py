"""Panel values for people: units from field names, words for booleans, lists as lists."""

from __future__ import annotations

import pytest

from stalwart.dashboard.humanize import cell, duration, header


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("rss", 52_428_800, "50.0 MiB"),
        ("cpu", 13.945933567987733, "13.9 %"),
        ("expires_in", 4.433, "4.43 s"),
        ("uptime", 7_500.0, "2 h 5 min"),
        ("restarts", 12_345, "12,345"),
        ("ok", True, "yes"),
        ("stopping", False, "no"),
        ("pid", None, "&ndash;"),
        ("replicas", [], "&ndash;"),
    ],
)
def test_values_get_their_unit_or_word(key: str, value: object, shown: str) -> None:
    html = str(cell(key, value))
    assert f">{shown}<" in html or html == shown


def test_lists_are_lists_series_are_sparklines_and_text_is_escaped() -> None:
    assert str(cell("sites", ["eu", "<us>"])).count("<li>") == 2
    assert "&lt;us&gt;" in str(cell("sites", ["<us>"]))
    series = str(cell("history memory", [1_048_576, 2_097_152]))
    assert "<polyline" in series and "latest 2.0 MiB" in series
    assert "<b>" not in str(cell("reason", "<b>x</b>"))
    assert "<x>" not in str(cell("evidence", {"peer": "<x>"}))


def test_headers_and_durations_read_as_words() -> None:
    assert header("last_reason") == "last reason" and header("rss") == "memory"
    assert duration(59.4) == "59 s" and duration(60) == "1 min" and duration(90061) == "1 d 1 h"
