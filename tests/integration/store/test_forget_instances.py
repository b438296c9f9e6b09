"""Instances gone for longer than [store] forget_after are no longer listed, and
`store prune` deletes them: `stalwart status` does not grow with every restart."""

from __future__ import annotations

from datetime import datetime, timedelta

from stalwart.envelope import Envelope, utcnow
from stalwart.messages import Heartbeat, heartbeat_topic
from stalwart.store import Store
from stalwart.store.queries import components
from stalwart.store.retention import prune

DAY = 86_400.0


def beat(instance: str, at: datetime) -> Envelope:
    """The last heartbeat of ``instance``, sent at ``at``."""
    body = Heartbeat(
        service="qa",
        site="eu",
        instance=instance,
        host="h5",
        pid=7,
        started_at=at,
        uptime=1.0,
        interval=10.0,
    )
    return Envelope.new(heartbeat_topic("qa"), body).model_copy(update={"created_at": at})


async def test_long_gone_instances_are_not_listed_then_pruned(store: Store) -> None:
    # Given an instance up now, one down for two hours and one gone for three days
    now = utcnow()
    await store.write(
        [
            beat("up", now),
            beat("down-2h", now - timedelta(hours=2)),
            beat("gone-3d", now - timedelta(days=3)),
        ]
    )
    # When listed with the default forget_after (24 h), Then the three-day one is left out
    listed = await components(store, now=now, forget_after=DAY)
    assert sorted(c.instance for c in listed) == ["down-2h", "up"]
    assert {c.instance: c.availability for c in listed}["down-2h"] == "down"
    # And with one hour, so is the two-hour one; without a limit, all three are there
    assert [c.instance for c in await components(store, now=now, forget_after=3600)] == ["up"]
    assert len(await components(store, now=now)) == 3
    # When the store is pruned, Then the instance gone for three days is deleted, only it
    done = await prune(store, now - timedelta(days=90), forget_after=DAY)
    assert done.instances == 1
    assert sorted(c.instance for c in await components(store, now=now)) == ["down-2h", "up"]
