"""The pace of retries against a service that is away: exponential, capped, jittered.

Used wherever a component waits for the broker to come back (the amqp
connector's reconnects, the outbox's forwarder, the bus link that keeps the
watchdog and the dashboard on the bus, the dashboard's live feed). Jitter
keeps the many processes that lost the broker together from retrying in step
and hitting it at the same instant when it returns.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays whose ceiling doubles from ``initial`` up to ``cap``; each delay is
    drawn between half the ceiling and the ceiling. :meth:`reset` starts over."""

    def __init__(self, initial: float = 0.5, cap: float = 15.0, rng: random.Random | None = None):
        if not 0 < initial <= cap:
            raise ValueError(
                f"backoff needs 0 < initial <= cap, got initial={initial} and cap={cap}"
            )
        self.initial = initial
        self.cap = cap
        self._rng = rng or random.Random()
        self._ceiling = initial

    def next(self) -> float:
        """The delay before the next try, in seconds; each call raises the ceiling."""
        ceiling = self._ceiling
        self._ceiling = min(self.cap, ceiling * 2)
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Back to ``initial``: the last try succeeded."""
        self._ceiling = self.initial
