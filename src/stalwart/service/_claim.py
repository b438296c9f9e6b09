"""A delivery attempt and its claim as the runtime sees them, without the store.

The runner and every Context name these for each message; the store that
keeps claims (:mod:`stalwart.service.claims`, with SQLAlchemy) is
imported only by a service that has an idempotent handler or opens
``ctx.transaction()``, so a plain service does not carry it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stalwart.errors import StalwartError

__all__ = ["Attempt", "Claim", "ClaimLost", "ClaimState"]


class ClaimLost(StalwartError):
    """The claim was taken over (its lease had expired): this run must not commit."""


class ClaimState(enum.Enum):
    CLAIMED = "claimed"  # this instance holds it: run the handler
    DONE = "done"  # a run already committed: a duplicate
    HELD = "held"  # another live instance holds it: wait


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    holder: str | None = None
    remaining: float = 0.0


@dataclass(slots=True)
class Attempt:
    """One delivery on its way through the runner: its claim on the id, if any."""

    message_id: str
    claimer: str  # the instance and a token of this attempt
    claimed: bool = False
    completed: bool = False
