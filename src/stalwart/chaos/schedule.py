"""The fault schedule: a pure function of the seed, so a campaign can be replayed.

``plan(seed, duration, kinds, targets)`` draws with one ``random.Random(seed)``:
every kind asked for appears at least once (in a shuffled order), then more
faults of random kinds fill the run, one every ``gap`` seconds on average.
Faults do not overlap: each has its own slot, and its hold (how long it stays
injected before it is healed) fits in the first part of its slot, so every
detection and recovery can be told apart on the timeline.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["HOLD", "FaultKind", "Planned", "plan"]


class FaultKind(enum.StrEnum):
    KILL = "kill"  # SIGKILL a process
    STOP = "stop"  # SIGSTOP a process, SIGCONT at heal
    LEAK = "leak"  # a process grows its memory until the watchdog stops it
    SLOW_PIPELINE = "slow-pipeline"  # a pipeline step runs at a fraction of its speed
    DISK_FULL = "disk-full"  # a site's archive has no free space
    CORRUPT_TRANSFER = "corrupt-transfer"  # bytes of a landed replica flipped
    TRUNCATE_TRANSFER = "truncate-transfer"  # a landed replica cut short
    WAN_CUT = "wan-cut"  # a site's link to the others is cut
    BROKER_NODE_LOSS = "broker-node-loss"  # a RabbitMQ node is killed
    BROKER_PARTITION = "broker-partition"  # a RabbitMQ node is cut off from its peers
    POSTGRES_RESTART = "postgres-restart"  # the store's PostgreSQL restarts


# Seconds a fault stays injected (longest; a short slot shortens it). 0: instant.
HOLD: Final[Mapping[FaultKind, float]] = {
    FaultKind.KILL: 0.0,
    FaultKind.STOP: 8.0,
    FaultKind.LEAK: 20.0,
    FaultKind.SLOW_PIPELINE: 15.0,
    FaultKind.DISK_FULL: 10.0,
    FaultKind.CORRUPT_TRANSFER: 0.0,
    FaultKind.TRUNCATE_TRANSFER: 0.0,
    FaultKind.WAN_CUT: 30.0,
    FaultKind.BROKER_NODE_LOSS: 15.0,
    FaultKind.BROKER_PARTITION: 20.0,
    FaultKind.POSTGRES_RESTART: 5.0,
}
_MIN_HOLD: Final = 2.0


@dataclass(frozen=True, slots=True)
class Planned:
    """One fault of the schedule: when (seconds from the start), what, where, how long."""

    at: float
    kind: FaultKind
    target: str
    hold: float

    def label(self) -> str:
        return f"{self.kind.value} {self.target}"


def plan(
    seed: int,
    duration: float,
    kinds: Sequence[FaultKind],
    targets: Mapping[FaultKind, Sequence[str]],
    *,
    gap: float = 10.0,
) -> list[Planned]:
    """The schedule for ``seed``: the same arguments always give the same list.

    ``targets[kind]`` lists where ``kind`` can strike (a program, a site, a
    node); a kind without targets is refused, so a caller drops what it cannot
    inject before planning.
    """
    if duration <= 0 or gap <= 0:
        raise ValueError(f"duration and gap must be positive, not {duration} and {gap}")
    if not kinds:
        raise ValueError("no fault kinds to plan: nothing could be injected here")
    for kind in kinds:
        if not targets.get(kind):
            raise ValueError(f"fault kind {kind.value!r} has no target to strike")
    rng = random.Random(seed)
    order = sorted(set(kinds), key=list(FaultKind).index)
    rng.shuffle(order)
    count = max(len(order), int(duration // gap))
    chosen = order + [rng.choice(order) for _ in range(count - len(order))]
    slot = duration / count
    planned = []
    for i, kind in enumerate(chosen):
        hold = min(HOLD[kind], max(_MIN_HOLD, slot * 0.5)) if HOLD[kind] else 0.0
        jitter = rng.uniform(0.0, max(0.0, slot - hold) * 0.3)
        target = rng.choice(list(targets[kind]))
        planned.append(Planned(round(i * slot + jitter, 3), kind, target, round(hold, 3)))
    return planned
