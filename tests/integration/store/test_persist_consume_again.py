"""The persister outlives its consumer: one that the transport ends, or that fails,
is started again (before, the persister stopped storing and went on beating)."""

from __future__ import annotations

import pytest
from store_traffic import Traffic, count, running

from flaky_consumers import FlakyConsumers
from stalwart.bus import Transport
from stalwart.store import Persister, PersistOptions, Store
from waiting import until


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_consumer_ended_or_failed_is_started_again(
    store: Store, bus: Transport, traffic: Traffic
) -> None:
    # Given a persister on a bus whose consumers end, then fail, before one lasts
    flaky = FlakyConsumers(bus)
    persister = Persister(flaky, store, PersistOptions(batch_size=1, batch_interval=0.01))
    await persister.declare()
    async with running(persister) as task:
        # When ten messages are published
        await bus.publish([traffic.message(body={"n": n}) for n in range(10)])

        # Then every one is stored, by the third consumer for the last ones
        async def stored() -> bool:
            return await count(store) == 10

        await until(stored, 30.0, "ten messages stored")
        assert flaky.consumers >= 3
        assert not task.done()
