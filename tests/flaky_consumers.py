"""A bus whose consumers do not last: what a long-lived part must outlive.

After a broker restart a queue can be missing for a moment, and the transport
then ends that consumer or fails to start it, without closing the connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from stalwart.bus import Delivery, Transport
from stalwart.errors import BrokerUnavailable


class FlakyConsumers:
    """The bus, but its first consumer ends after two deliveries and its second
    fails at once (as a queue missing after a broker restart would make it)."""

    def __init__(self, bus: Transport) -> None:
        self._bus = bus
        self.consumers = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    def consume(self, queue: str, prefetch: int) -> AsyncIterator[Delivery]:
        self.consumers += 1
        return self._consume(queue, prefetch, self.consumers)

    async def _consume(self, queue: str, prefetch: int, nth: int) -> AsyncIterator[Delivery]:
        if nth == 2:
            raise BrokerUnavailable(f"queue {queue} not found")
        taken = 0
        async for delivery in self._bus.consume(queue, prefetch):
            yield delivery
            taken += 1
            if nth == 1 and taken == 2:
                return
