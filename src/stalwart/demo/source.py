"""Feeds units of work into the demonstration, as an observatory's scheduler would."""

from __future__ import annotations

import asyncio
import random
from typing import Final

from stalwart.bus import Transport
from stalwart.demo.models import StateChange, UnitReady, UnitState
from stalwart.envelope import Envelope, default_sender

__all__ = ["PRODUCT_KIB", "feed"]

# Products are small, so the demo runs for days in little space (README, "Disk space").
PRODUCT_KIB: Final = (64, 512)


async def feed(
    transport: Transport, *, units: int | None, interval: float, site: str, seed: int = 7
) -> int:
    """Publish ``units`` units (None: forever), one every ``interval`` seconds."""
    rng = random.Random(seed)
    sender = default_sender("scheduler", site)
    sent = 0
    while units is None or sent < units:
        ous = f"uid://A001/X{rng.randrange(16**4):04x}/X{sent:x}"
        unit = UnitReady(
            ous=ous,
            project=f"2026.1.{rng.randrange(1000):05d}.S",
            size_kib=rng.randint(*PRODUCT_KIB),
        )
        ready = Envelope.new("ous.ready", unit, sender=sender)
        state = Envelope.new(
            "ous.state",
            StateChange(ous=ous, state=UnitState.READY_FOR_PROCESSING),
            sender=sender,
            causation_id=ready.id,
            correlation_id=ready.id,
        )
        await transport.publish([ready, state])
        sent += 1
        await asyncio.sleep(interval)
    return sent
