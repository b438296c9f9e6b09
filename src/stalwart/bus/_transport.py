"""The transport contract: what every bus backend (sqlite, amqp, nats) implements.

The service runtime, the persistence subscriber, the watchdog, ``stalwart
tail`` and the dashboard sit on this contract only. One contract test suite
(``tests/integration/test_transport_contract.py``) runs against every
transport.

Errors, for every method: :class:`~stalwart.errors.BrokerUnavailable` when the
backend cannot be reached (``start`` raises it at once on the first connect;
later the transport reconnects by itself and only raises from ``publish`` once
its timeout has passed), :class:`~stalwart.errors.TransportClosed` after
``close``, :class:`~stalwart.errors.MessageTooLarge` from ``publish`` for an
envelope over the size limit (nothing of that batch is published).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol, runtime_checkable

from stalwart.backoff import jittered
from stalwart.envelope import Envelope
from stalwart.errors import DecodeError, MessageTooLarge
from stalwart.topics import validate_pattern

__all__ = [
    "Batching",
    "DeadLetter",
    "Delivery",
    "Encoded",
    "EncodedMessage",
    "Pipelined",
    "QueueSpec",
    "QueueStats",
    "Transport",
    "backoff_delay",
    "within_limit",
]


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A service's durable queue and what it is bound to.

    ``name`` is the service name. Instances consuming the same queue compete;
    each queue gets its own copy of every message whose topic matches one of
    ``patterns``. After ``max_attempts`` failed attempts a message goes to the
    queue's dead-letter queue. ``lease`` is how long a delivery stays with a
    consumer without being renewed (``Delivery.extend``) before it is handed
    to another. An ``ephemeral`` queue (``stalwart tail``) is deleted on close;
    what it holds may be lost with a broker node, unless it is ``lossless`` (a
    process's replies), which makes it as safe as a work queue.
    """

    name: str
    patterns: tuple[str, ...]
    max_attempts: int = 5
    retry_initial: float = 0.5
    retry_max: float = 60.0
    lease: float = 30.0
    ephemeral: bool = False
    lossless: bool = False

    def __post_init__(self) -> None:
        for pattern in self.patterns:
            validate_pattern(pattern)
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.lease <= 0:
            raise ValueError("lease must be > 0 seconds")


def backoff_delay(spec: QueueSpec, attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter, capped: the delay before ``attempt + 1``."""
    return jittered(attempt, spec.retry_initial, spec.retry_max, rng)


class Encoded(NamedTuple):
    """An envelope already encoded (:func:`stalwart.envelope.encode`): its id, topic, bytes."""

    id: str
    topic: str
    data: bytes


class EncodedMessage(Protocol):
    """What ``publish_encoded`` takes: an :class:`Encoded`, or any record with its three
    fields (an outbox's spool rows go out as read, with no copy made per row)."""

    @property
    def id(self) -> str: ...

    @property
    def topic(self) -> str: ...

    @property
    def data(self) -> bytes: ...


def within_limit(data: bytes, limit: int) -> bytes:
    """``data`` if at most ``limit`` bytes, else MessageTooLarge (as ``encode`` raises)."""
    if len(data) > limit:
        raise MessageTooLarge(len(data), limit)
    return data


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts for one queue at one instant."""

    name: str
    ready: int
    inflight: int
    delayed: int
    dead: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered message with why and when it died."""

    envelope: Envelope | None
    raw: bytes
    queue: str
    reason: str
    attempts: int
    died_at: datetime
    key: str = field(default="")  # transport-specific handle for retry/purge


class Delivery(Protocol):
    """One message handed to one consumer; settle it exactly once.

    ``envelope`` is ``None`` when the raw bytes did not decode; ``error`` then
    says why and ``raw`` keeps the data, so the runtime can dead-letter it
    without losing it.
    """

    queue: str
    attempt: int
    raw: bytes

    @property
    def envelope(self) -> Envelope | None: ...

    @property
    def error(self) -> DecodeError | None: ...

    async def ack(self) -> None:
        """Done: the message leaves the queue."""

    async def retry(self, delay: float | None, reason: str) -> bool:
        """Failed: redeliver after ``delay`` (None: the queue's backoff).

        Returns ``False`` when that was the last attempt and the message went
        to the dead-letter queue instead.
        """

    async def dead(self, reason: str) -> None:
        """Give up now: move to the dead-letter queue with ``reason``."""

    async def release(self) -> None:
        """Give it back unprocessed: redelivered at once, the attempt not counted.

        For a consumer that must not act on it (fenced out, or stopping).
        """

    async def extend(self, seconds: float) -> None:
        """Renew the lease so that a long handler is not redelivered."""


@runtime_checkable
class Transport(Protocol):
    """A durable topic-routed bus backend."""

    url: str

    @property
    def connected(self) -> bool:
        """True while started and able to reach the broker (False while reconnecting)."""
        ...

    async def start(self) -> None:
        """Connect; fail fast with BrokerUnavailable the first time."""

    async def close(self) -> None:
        """Stop consumers, cancel and await own tasks, disconnect. Idempotent."""

    async def declare(self, queue: QueueSpec) -> None:
        """Create (or update the bindings of) a service's queue and its dead-letter queue."""

    async def publish(self, batch: Sequence[Envelope], *, sync: bool = True) -> None:
        """Route and store every envelope durably; return only when all are durable.

        ``sync=False`` is for a batch that only has to be recorded before what
        this transport does next (a final state before its ack): a backend that
        keeps publishes and settlements in one ordered log (the embedded bus)
        may then skip the disk flush, since a power loss can undo the batch
        only together with everything that followed it. A crash of the process
        still loses nothing. Network brokers confirm every publish either way.
        """

    async def publish_encoded(self, batch: Sequence[EncodedMessage]) -> None:
        """:meth:`publish` for envelopes already encoded (an outbox's spool): their
        bytes go out as they are, never decoded and encoded again."""

    def consume(self, queue: str, prefetch: int) -> AsyncIterator[Delivery]:
        """Deliveries from ``queue``, at most ``prefetch`` unsettled at a time.

        The iterator ends when the transport closes. Closing the iterator
        (``aclose()``, or breaking out of ``async for``) stops the consumer: no
        new deliveries, and any prefetched but not yet yielded are released at
        once. Deliveries already yielded stay settleable until the transport
        closes, so a graceful shutdown can stop taking work, finish in-flight
        handlers and ack them; unsettled ones come back after ``close()``.
        """

    async def queue_stats(self, queue: str) -> QueueStats: ...

    async def queues(self) -> list[str]:
        """Names of the declared (non-ephemeral) queues."""

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]: ...

    async def requeue_dead(self, queue: str, keys: Sequence[str] | None = None) -> int:
        """Put dead letters (all, or those with ``keys``) back for another try."""

    async def purge_dead(self, queue: str, keys: Sequence[str] | None = None) -> int:
        """Delete dead letters (all, or those with ``keys``); returns how many."""


@runtime_checkable
class Pipelined(Protocol):
    """A transport that can keep several batches' confirms in flight, in order.

    What an outbox draining its spool wants: with one batch at a time it would
    wait a broker round trip between batches, while a publisher of its own can
    have many publishes in flight. RabbitMQ and NATS implement it.
    """

    async def send_encoded(self, batch: Sequence[EncodedMessage]) -> Awaitable[None]:
        """Send every message of ``batch`` in order and return once they are queued on
        the connection, before the broker confirms: batches sent one after another
        reach the broker in that order. Await the result for the confirms; it raises
        as :meth:`Transport.publish_encoded` does (``publish_encoded`` is the two
        steps in one). Hand the result to ``asyncio.ensure_future`` or await it."""


@runtime_checkable
class Batching(Protocol):
    """A transport that hands out and acks deliveries in groups: the embedded bus.

    Handing deliveries out one by one costs a consumer a loop step per message
    and each ack a settlement of its own; a bulk consumer (a loader, an
    archiver) wants what one claim leased as one list, acked in one
    transaction. :func:`~stalwart.bus.consume_batches` and
    :func:`~stalwart.bus.ack_all` use this where a transport has it.
    """

    def consume_batches(self, queue: str, prefetch: int) -> AsyncIterator[Sequence[Delivery]]:
        """:meth:`Transport.consume`, a list at a time: the deliveries one claim leased."""
        ...

    async def ack_all(self, deliveries: Sequence[Delivery]) -> None:
        """Ack every delivery (each at most once) in one go; any settled already: an error."""
