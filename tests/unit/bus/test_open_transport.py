"""Opening a transport from a URL: a clear error for what is not supported."""

from __future__ import annotations

import pytest

from stalwart.bus import open_transport, redact_url
from stalwart.bus.nats import NatsTransport
from stalwart.bus.sqlite import SqliteTransport
from stalwart.errors import ConfigError


def test_a_sqlite_url_opens_the_embedded_bus(tmp_path) -> None:
    assert isinstance(open_transport(f"sqlite:///{tmp_path}/bus.db"), SqliteTransport)


def test_a_nats_url_opens_the_jetstream_transport_without_connecting() -> None:
    bus = open_transport("nats://127.0.0.1:4222,nats://127.0.0.1:4223?replicas=3")
    assert isinstance(bus, NatsTransport)
    assert (bus.replicas, bus.connected) == (3, False)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379", "kafka://h/", "no-scheme"])
def test_an_unsupported_scheme_is_a_config_error_with_examples(url: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown bus URL scheme.*sqlite:///"):
        open_transport(url)


def test_passwords_never_appear_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        open_transport("kafka://user:s3cret@host/")
    assert "s3cret" not in str(caught.value)
    assert redact_url("amqp://guest:guest@h:5672/") == "amqp://guest:***@h:5672/"
