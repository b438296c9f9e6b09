"""EventPublisher on a real embedded bus: it closes the bus it opened, never one it was lent."""

from __future__ import annotations

from pathlib import Path

from stalwart.bus import open_transport
from stalwart.config import Settings
from stalwart.envelope import Envelope
from stalwart.events import HaKind, LeaseEvent
from stalwart.service import EventPublisher

LEASE = LeaseEvent(event=HaKind.FENCED, role="service.qa", holder="qa@eu/1", token=4)


async def test_the_publisher_closes_the_bus_it_opened_only(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, bus={"url": f"sqlite:///{tmp_path}/own.db"})
    async with EventPublisher.for_settings(settings, "integrity", "eu") as own:
        assert own.unavailable is None
        assert await own.publish(LEASE) is True
    assert await own.publish(LEASE) is False  # closed with the block

    lent = open_transport(f"sqlite:///{tmp_path}/lent.db")
    await lent.start()
    try:
        async with EventPublisher(lent, "qa@eu/1") as borrowed:
            await borrowed.publish(LEASE)
        await lent.publish([Envelope.new("still.open", {})])  # the owner's to close
    finally:
        await lent.close()
