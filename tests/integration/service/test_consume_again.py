"""A consumer that the transport ends, or that fails, is started again.

After a broker restart a queue can be missing for a moment, and the transport
then stops that consumer. The instance must not go on beating with nothing
reaching it: the runtime consumes again, after a pause.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from stalwart.bus import Delivery, Transport
from stalwart.config import Settings
from stalwart.envelope import Envelope
from stalwart.errors import BrokerUnavailable
from stalwart.service import Context, Service, ServiceRunner
from waiting import until


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


async def test_a_consumer_ended_or_failed_is_started_again(
    bus: Transport, settings: Settings, unique: str
) -> None:
    # Given a service on a bus whose consumers end, then fail, before one lasts
    handled: list[int] = []
    svc = Service(f"again-{unique}", concurrency=1)

    @svc.handler("work.item")
    async def work(ctx: Context, body: Any) -> None:
        handled.append(body["n"])

    flaky = FlakyConsumers(bus)
    runner = ServiceRunner(svc, flaky, settings)  # type: ignore[arg-type]
    await runner.start()
    try:
        # When ten messages are published
        await bus.publish([Envelope.new("work.item", {"n": n}) for n in range(10)])
        # Then every one is handled, by the third consumer for the last ones
        await until(lambda: sorted(set(handled)) == list(range(10)), 20.0, "all ten handled")
        assert flaky.consumers >= 3
    finally:
        await runner.stop(grace=1.0)
