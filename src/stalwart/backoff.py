"""The pace of retries against a service that is away: exponential, capped, jittered.

Used wherever a component waits for something to come back: the broker (the
amqp connector's reconnects, the outbox's forwarder, the bus link that keeps
the watchdog and the dashboard on the bus, the dashboard's live feed), the
store (the persister, the runtime, leases, the watchdog's records), a transfer
source, the embedded bus's write lock (growing by 1.5, not 2: its waits are
fractions of a millisecond), and for a message's own retries (:func:`jittered`
by attempt). Jitter keeps the many processes that lost the broker together
from retrying in step and hitting it at the same instant when it returns.
"""

from __future__ import annotations

import random

__all__ = ["Backoff", "jittered"]


def jittered(
    tries: int,
    initial: float,
    cap: float,
    rng: random.Random | None = None,
    factor: float = 2.0,
) -> float:
    """The delay after ``tries`` failed tries (1 or more): a ceiling of
    ``initial`` times ``factor`` per further try, at most ``cap``; drawn between
    half the ceiling and the ceiling."""
    ceiling = min(cap, initial * factor ** max(tries - 1, 0))
    return (rng or random).uniform(ceiling / 2, ceiling)


class Backoff:
    """Delays whose ceiling grows by ``factor`` (doubles) from ``initial`` up to
    ``cap``; each delay is drawn between half the ceiling and the ceiling.
    :meth:`reset` starts over."""

    def __init__(
        self,
        initial: float = 0.5,
        cap: float = 15.0,
        rng: random.Random | None = None,
        factor: float = 2.0,
    ):
        if not 0 < initial <= cap:
            raise ValueError(
                f"backoff needs 0 < initial <= cap, got initial={initial} and cap={cap}"
            )
        if factor < 1:
            raise ValueError(f"backoff needs factor >= 1, got {factor}")
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self._rng = rng or random.Random()
        self._tries = 0

    def next(self) -> float:
        """The delay before the next try, in seconds; each call raises the ceiling."""
        self._tries += 1
        return jittered(self._tries, self.initial, self.cap, self._rng, self.factor)

    def reset(self) -> None:
        """Back to ``initial``: the last try succeeded."""
        self._tries = 0
