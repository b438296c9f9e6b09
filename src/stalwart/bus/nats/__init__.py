"""The ``nats://`` transport: NATS JetStream through nats-py.

Layout (``_names``; ``docs/wire-format.md``, ``docs/nats.md``): every
envelope on topic ``T`` is published to subject ``N.T`` (``N``: the
namespace, ``bus.exchange``) in the work stream ``N``, with interest
retention, so a message stays until every service it matched has settled it.
Each service has durable pull consumers on its subject filters (``*`` as
``*``, ``#`` as ``>``) and on its direct subject ``N-to.S``; instances of a
service pull from the same consumers and compete, each service gets its own
copy.

Behaviour: a publish returns once JetStream acknowledged every message of
the batch (stored on a majority of the stream's replicas); an envelope id is
stored once within two minutes (``Nats-Msg-Id``). Leases are the consumers'
ack wait, renewed by in-progress acks (``Delivery.extend``). A retry is a
NAK with the queue's backoff as delay; after ``max_attempts`` a message is
copied with its reason to ``N-dead.S`` in the stream ``N-dead`` and
acknowledged. An expired envelope (its ``ttl``) is dead-lettered on
delivery. The client reconnects by itself across the listed servers.

Durability: JetStream acknowledges a message once it is written on a
majority of replicas, before any fsync; nats-server 2.9 syncs its files
every two minutes. Use ``replicas=3`` (``nats://h1,h2,h3?replicas=3``) on a
cluster so that a publish survives the loss of a node; see docs/nats.md.
"""

from stalwart.bus.nats._transport import NatsTransport

__all__ = ["NatsTransport"]
