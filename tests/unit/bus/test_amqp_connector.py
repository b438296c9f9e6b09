"""The AMQP connector turns a connection that died under it into BrokerUnavailable."""

from __future__ import annotations

from typing import Any

import pytest

from stalwart.bus.amqp._conn import Connector, _ClosedWhenConnectFails
from stalwart.errors import BrokerUnavailable


class _ClosedUnderneath:
    """A connection whose close callback has not run yet, as aio-pika leaves it."""

    is_closed = True

    async def channel(self, **_: Any) -> None:
        raise RuntimeError(f"{self!r} closed")


async def _nothing(_conn: Any) -> None:
    return None


async def test_a_connection_closed_before_its_callback_reads_as_broker_unavailable() -> None:
    # Given a connector that still believes its connection is ready
    connector = Connector(["amqp://guest:guest@127.0.0.1:1/"], on_connected=_nothing)
    connector._conn = _ClosedUnderneath()  # type: ignore[assignment]
    connector._ready.set()
    # When a publisher asks for the confirm channel
    # Then it hears that the broker is unavailable (which the outbox spools on)
    with pytest.raises(BrokerUnavailable, match="closed the connection"):
        await connector.publish_channel(1.0)


@pytest.mark.parametrize(
    ("url", "heartbeat"),
    [("amqp://u:p@127.0.0.1:1/", 10), ("amqp://u:p@127.0.0.1:1/?heartbeat=3", None)],
)
async def test_heartbeats_every_10s_unless_the_url_says(
    monkeypatch: pytest.MonkeyPatch, url: str, heartbeat: int | None
) -> None:
    # Given aio-pika, whose own default (60 s) notices a silent node after 3 minutes
    asked: dict[str, Any] = {}

    async def connect(_url: str, **kwargs: Any) -> None:
        asked.update(kwargs)
        raise ConnectionError("no broker here")

    monkeypatch.setattr("stalwart.bus.amqp._conn.aio_pika.connect", connect)
    # When the connector connects
    with pytest.raises(BrokerUnavailable):
        await Connector([url], on_connected=_nothing).start()
    # Then it asks for 10 s heartbeats, unless the URL set its own (aio-pika reads it there)
    assert asked.get("heartbeat") == heartbeat


async def test_a_connection_that_cannot_connect_is_closed_not_left_to_the_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a broker that refuses every connection, and a record of the connections made
    made: list[Any] = []

    class Recorded(_ClosedWhenConnectFails):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    async def refuse(*_: Any, **__: Any) -> None:
        raise ConnectionError("refused")

    monkeypatch.setattr("stalwart.bus.amqp._conn._ClosedWhenConnectFails", Recorded)
    monkeypatch.setattr("aio_pika.connection.UnderlayConnection.connect", refuse)
    # When the connector tries to connect
    with pytest.raises(BrokerUnavailable):
        await Connector(["amqp://u:p@127.0.0.1:1/"], on_connected=_nothing).start()
    # Then the connection it made is closed, so aio-pika's __del__ has no close() to schedule
    assert len(made) == 1 and made[0].is_closed
