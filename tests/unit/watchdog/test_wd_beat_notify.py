"""The beat datagram format, a beat outside a watchdog, and the watchdog's events
(the sockets themselves are tested in tests/integration/watchdog/test_wd_sockets.py)."""

from __future__ import annotations

import pytest

from stalwart.errors import ConfigError
from stalwart.events import WatchdogEvent, WatchdogKind, event_envelope
from stalwart.watchdog.beat import BeatError, format_beat, parse_beat, send_beat


def test_beat_lines_round_trip_and_bad_ones_are_refused() -> None:
    assert parse_beat(format_beat("qa", 2, 42).decode()) == ("qa", 2, 42)
    assert parse_beat("qa 0") == ("qa", 0, None)
    for bad in ("qa", "qa x", "qa 0 -1", "a b c d"):
        with pytest.raises(BeatError):
            parse_beat(bad)


def test_send_beat_outside_a_watchdog_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STALWART_WATCHDOG_SOCKET", raising=False)
    with pytest.raises(ConfigError, match="not running under a watchdog"):
        send_beat(1)


def test_events_travel_on_their_topic_and_fatal_is_an_alarm() -> None:
    event = WatchdogEvent(event=WatchdogKind.FATAL, program="qa", reason="x", alarm=True)
    envelope = event_envelope(event, "watchdog@local/1")
    assert envelope.topic == "sys.watchdog.fatal"
    assert envelope.kind == "WatchdogEvent" and envelope.headers == {"alarm": "true"}
    assert WatchdogEvent.model_validate(envelope.body) == event
