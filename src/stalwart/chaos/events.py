"""Each fault as an event in the store: ``sys.chaos.<phase>`` messages.

The campaign writes the envelope straight into the store (so the record does
not wait for a persister it may have just killed) and the checker finds it
there by its topic. The body names the fault, its target and its phase.
"""

from __future__ import annotations

import asyncio
import enum
import time
from datetime import datetime
from typing import Final

from pydantic import BaseModel, ConfigDict

from stalwart.envelope import Envelope, default_sender, utcnow
from stalwart.errors import StoreUnavailable
from stalwart.store import Store

__all__ = ["CHAOS_PREFIX", "ChaosEvent", "Phase", "Recorder"]

CHAOS_PREFIX: Final = "sys.chaos"
_PATIENCE: Final = 60.0  # seconds a record is retried while the store is away


class Phase(enum.StrEnum):
    INJECTED = "injected"
    HEALED = "healed"
    SKIPPED = "skipped"  # the target was not there (the reason says why)


class ChaosEvent(BaseModel):
    """One step of one fault of a campaign."""

    model_config = ConfigDict(frozen=True)

    seed: int
    index: int  # the fault's place in the schedule
    kind: str
    target: str
    phase: Phase
    at: datetime
    detail: str = ""


class Recorder:
    """Writes a campaign's events into its store."""

    def __init__(self, store: Store, site: str = "local") -> None:
        self._store = store
        self._sender = default_sender("chaos", site)

    async def record(
        self, seed: int, index: int, kind: str, target: str, phase: Phase, detail: str = ""
    ) -> ChaosEvent:
        event = ChaosEvent(
            seed=seed,
            index=index,
            kind=kind,
            target=target,
            phase=phase,
            at=utcnow(),
            detail=detail,
        )
        envelope = Envelope.new(f"{CHAOS_PREFIX}.{phase.value}", event, sender=self._sender)
        deadline = time.monotonic() + _PATIENCE
        while True:
            try:
                await self._store.write([envelope])
                return event
            except StoreUnavailable:  # restarting, or locked by a writer a fault froze
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
