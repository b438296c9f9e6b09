"""A consumer that the transport ends, or that fails, is started again.

The instance must not go on beating with nothing reaching it: the runtime
consumes again, after a pause (see also the persister's
tests/integration/store/test_persist_consume_again.py).
"""

from __future__ import annotations

from typing import Any

from flaky_consumers import FlakyConsumers
from stalwart.bus import Transport
from stalwart.config import Settings
from stalwart.envelope import Envelope
from stalwart.service import Context, Service, ServiceRunner
from waiting import until


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
