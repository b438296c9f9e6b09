"""The store records what the real service runtime does: states, chains, heartbeats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from store_traffic import count, running

from stalwart.bus import Transport
from stalwart.config import load_settings
from stalwart.envelope import Envelope
from stalwart.service import Context, Reject, Service, ServiceRunner
from stalwart.store import Persister, PersistOptions, Store
from stalwart.store.queries import MessageFilter, components, get_message, list_messages
from stalwart.store.schema import deliveries, messages
from waiting import until


def _service() -> Service:
    svc = Service("qa", site="eu", heartbeat_interval=0.2)

    @svc.handler("pipeline.done.eu")
    async def verify(ctx: Context, body: Any) -> None:
        if body.get("bad"):
            raise Reject("no calibration table")
        await ctx.publish("qa.verified.eu", {"ous": body["ous"], "score": 0.9})

    return svc


async def test_a_services_work_is_persisted_with_states_chain_and_heartbeats(
    store: Store, bus: Transport, tmp_path: Path
) -> None:
    # Given the persister and a running service on the embedded bus
    config = tmp_path / "stalwart.toml"
    config.write_text("")
    settings = load_settings(config, env={"STALWART_HOME": str(tmp_path)})
    persister = Persister(bus, store, PersistOptions(batch_size=100, batch_interval=0.02))
    await persister.declare()
    runner = ServiceRunner(_service(), bus, settings)
    await runner.start()
    try:
        async with running(persister):
            # When one good and one bad unit of work are published
            good = Envelope.new("pipeline.done.eu", {"ous": "uid://A1"}, sender="pipeline@eu/1")
            bad = Envelope.new("pipeline.done.eu", {"bad": True}, sender="pipeline@eu/1")
            await bus.publish([good, bad])

            async def recorded() -> bool:
                page = await list_messages(store, MessageFilter(service="qa"))
                states = {m.id: m.states.get("qa") for m in page.items}
                return (
                    states.get(good.id) == "consumed"
                    and states.get(bad.id) == "rejected"
                    and await count(store, messages.c.topic == "qa.verified.eu") == 1
                    and any(c.availability == "up" for c in await components(store))
                )

            await until(recorded, 30.0, "both states, the verdict and qa's component")
    finally:
        await runner.stop(grace=1.0)
    # Then the good one's detail shows its timeline and the message it caused
    detail = await get_message(store, good.id)
    assert detail is not None
    (qa,) = detail.deliveries
    assert qa.state == "consumed" and {"received", "consumed"} <= set(qa.times)
    (child,) = detail.descendants.children
    assert child.topic == "qa.verified.eu"
    # And the bad one's rejection keeps its reason, and the instance is known (it was up)
    rejected = await get_message(store, bad.id)
    assert rejected is not None and "calibration" in (rejected.deliveries[0].reason or "")
    # And the runtime's transitions gave each delivery its message's time
    stamped = select(deliveries.c.message_id, deliveries.c.message_created_at)
    async with store.engine.connect() as conn:
        times = {row.message_id: row.message_created_at for row in await conn.execute(stamped)}
    assert times == {good.id: good.created_at, bad.id: bad.created_at}
    page = await list_messages(store, MessageFilter(service="qa", state="rejected"))
    assert [m.id for m in page.items] == [bad.id]
    (instance,) = await components(store)
    assert (instance.service, instance.site, instance.instance) == ("qa", "eu", runner.instance)
