"""What the campaign did: one :class:`Entry` per planned fault, filled in as it goes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from stalwart.chaos.schedule import Planned

__all__ = ["Entry"]


@dataclass
class Entry:
    """One fault of the schedule and what became of it."""

    index: int
    planned: Planned
    injected_at: datetime | None = None
    healed_at: datetime | None = None
    detail: str = ""
    heal_detail: str = ""
    skipped: str | None = None  # why it could not strike
    restarts: str | None = None  # the programs whose restarts it explains (a glob: *-eu)
