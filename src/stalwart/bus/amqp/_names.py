"""Names and arguments of everything the amqp transport declares on RabbitMQ.

One place decides the broker layout, so that ``docs/wire-format.md``, the
transport and foreign clients agree: for exchange ``X`` and service ``S``

- ``X``              topic exchange every envelope is published to;
- ``X.dlx``          direct exchange for dead letters (routing key ``S``);
- ``X.S``            the service's durable work queue, bound to its patterns;
- ``X.S.dead``       its dead-letter queue;
- ``X.S.wait.<ms>``  retry delay queues: messages wait ``<ms>`` then are
                     dead-lettered back to ``X.S`` through the default exchange;
- ``X.directory``    records of declared queues (RabbitMQ has no listing over AMQP).
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any, Final, Literal

__all__ = [
    "ATTEMPT_HEADER",
    "DEAD_KEY_HEADER",
    "DIED_AT_HEADER",
    "EPHEMERAL_QUEUE_ARGUMENTS",
    "ERROR_HEADER",
    "QUEUE_HEADER",
    "REASON_HEADER",
    "QueueType",
    "dead_queue",
    "directory_queue",
    "dlx_exchange",
    "ladder",
    "ladder_between",
    "lossless_queue_arguments",
    "quantise_delay",
    "wait_queue",
    "wait_queue_arguments",
    "work_queue",
    "work_queue_arguments",
]

QueueType = Literal["quorum", "classic"]

ATTEMPT_HEADER: Final = "x-stalwart-attempt"
ERROR_HEADER: Final = "x-stalwart-error"
REASON_HEADER: Final = "x-stalwart-reason"
QUEUE_HEADER: Final = "x-stalwart-queue"
DIED_AT_HEADER: Final = "x-stalwart-died-at"
DEAD_KEY_HEADER: Final = "x-stalwart-dead-key"

# Delays are rounded to a fixed ladder of round numbers (1, 1.2, 1.5, 2, 2.5,
# 3, 4, 5, 6, 8 per decade, from 50 ms to one day; neighbours differ by at
# most a third) so that a service needs only a few wait queues, each with one
# queue-level TTL: per-message TTLs in one queue expire only at the head and
# would make short delays wait behind long ones.
_MANTISSAS: Final = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
_LADDER_MIN_MS: Final = 50
_LADDER_MAX_MS: Final = 86_400_000


@cache
def ladder() -> tuple[int, ...]:
    """Every delay (ms) :func:`quantise_delay` can produce: the possible wait queues."""
    steps = {
        round(m * 10**exp)
        for exp in range(1, 8)
        for m in _MANTISSAS
        if _LADDER_MIN_MS <= round(m * 10**exp) <= _LADDER_MAX_MS
    }
    return tuple(sorted(steps | {_LADDER_MAX_MS}))


def quantise_delay(seconds: float) -> int:
    """The ladder step (in whole milliseconds) nearest to ``seconds``; 0 for no delay."""
    if seconds <= 0:
        return 0
    steps = ladder()
    wanted = math.log(min(max(seconds * 1000, steps[0]), steps[-1]))
    return min(steps, key=lambda step: abs(math.log(step) - wanted))


def ladder_between(low: float, high: float) -> tuple[int, ...]:
    """The steps that delays from ``low`` to ``high`` seconds quantise to."""
    first, last = quantise_delay(low), quantise_delay(high)
    return tuple(step for step in ladder() if first <= step <= last)


def work_queue(exchange: str, service: str) -> str:
    return f"{exchange}.{service}"


def dead_queue(exchange: str, service: str) -> str:
    return f"{exchange}.{service}.dead"


def wait_queue(exchange: str, service: str, delay_ms: int) -> str:
    return f"{exchange}.{service}.wait.{delay_ms}"


def dlx_exchange(exchange: str) -> str:
    return f"{exchange}.dlx"


def directory_queue(exchange: str) -> str:
    return f"{exchange}.directory"


_EPHEMERAL_EXPIRES_MS = 60_000
# A tail's or a live view's queue: on the node its consumer is connected to.
EPHEMERAL_QUEUE_ARGUMENTS: Final[dict[str, Any]] = {"x-expires": _EPHEMERAL_EXPIRES_MS}


def _durable_arguments(queue_type: QueueType) -> dict[str, Any]:
    if queue_type == "quorum":
        # At-least-once dead-lettering needs reject-publish overflow.
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    return {"x-queue-type": "classic"}


def lossless_queue_arguments(queue_type: QueueType) -> dict[str, Any]:
    """A process's reply queue: of the work queues' type, so that on a cluster it keeps
    the replies published while its consumer's node is down (a classic queue lives
    and dies on one node); deleted by the broker a minute after its process is gone."""
    return {"x-queue-type": queue_type, "x-expires": _EPHEMERAL_EXPIRES_MS}


def work_queue_arguments(exchange: str, service: str, queue_type: QueueType) -> dict[str, Any]:
    """A work queue dead-letters what the broker drops (expiry) into ``X.S.dead``."""
    return {
        **_durable_arguments(queue_type),
        "x-dead-letter-exchange": dlx_exchange(exchange),
        "x-dead-letter-routing-key": service,
    }


def wait_queue_arguments(
    exchange: str, service: str, delay_ms: int, queue_type: QueueType
) -> dict[str, Any]:
    return {
        **_durable_arguments(queue_type),
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": work_queue(exchange, service),
    }
