"""The ``amqp://`` transport: RabbitMQ through aio-pika.

Layout (see ``docs/wire-format.md`` and ``_names``): one topic
exchange, a durable queue per service (quorum by default) bound to its
patterns, delay queues for retries, a dead-letter exchange and a per-service
dead-letter queue. Publishing waits for publisher confirms of the whole
batch. A lost connection is re-established (failing over between the nodes
of a comma-separated URL list) and the declared queues and consumers are
replayed before publishing resumes.
"""

from stalwart.bus.amqp._transport import AmqpTransport

__all__ = ["AmqpTransport"]
