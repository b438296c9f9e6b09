"""The bus: one transport contract, several backends, and the outbox.

Public face: :func:`open_transport`, :class:`Transport`, :class:`Delivery`,
:class:`QueueSpec` and friends, :class:`BusLink` (a long-lived
component's connection, kept while the bus comes and goes),
:func:`consume_forever` (a long-lived part's consumer, started again when it
ends), :func:`consume_batches` and :func:`ack_all` (a bulk consumer's, in
groups) and :class:`HeartbeatSender` (a component's proof of life: services,
the persister). Backends live in ``sqlite``, ``amqp`` and ``nats``; ``outbox``
wraps any of them with a local store-and-forward spool.
"""

from stalwart.bus._batches import ack_all, consume_batches
from stalwart.bus._factory import open_transport, redact_url
from stalwart.bus._forever import consume_forever
from stalwart.bus._heartbeat import Counters, HeartbeatSender
from stalwart.bus._link import BusLink
from stalwart.bus._open import open_bus
from stalwart.bus._transport import (
    Batching,
    DeadLetter,
    Delivery,
    Encoded,
    EncodedMessage,
    QueueSpec,
    QueueStats,
    Transport,
    backoff_delay,
)

__all__ = [
    "Batching",
    "BusLink",
    "Counters",
    "DeadLetter",
    "Delivery",
    "Encoded",
    "EncodedMessage",
    "HeartbeatSender",
    "QueueSpec",
    "QueueStats",
    "Transport",
    "ack_all",
    "backoff_delay",
    "consume_batches",
    "consume_forever",
    "open_bus",
    "open_transport",
    "redact_url",
]
