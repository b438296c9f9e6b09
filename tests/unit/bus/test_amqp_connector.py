"""The AMQP connector turns a connection that died under it into BrokerUnavailable."""

from __future__ import annotations

from typing import Any

import pytest

from stalwart.bus._amqp_conn import Connector
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
