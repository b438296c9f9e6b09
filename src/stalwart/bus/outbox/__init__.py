"""Store-and-forward outbox: publishing goes on while the broker is away.

:class:`OutboxTransport` wraps any transport. When the inner transport cannot
confirm a batch (down, blocked, timed out), the batch is written to a local
durable SQLite spool (fsynced) and ``publish`` returns: the messages are
durable on this host. A forwarder task drains the spool in order, with
backoff, once the broker is back; a spool left by a process that exited is
forwarded when the next process starts on it. Everything else delegates.

Order: while anything waits in the spool, new batches are spooled behind it,
so a process's messages reach the broker in the order it published them.

Destination: every spooled message records the bus it was meant for
(:func:`destination`), and an outbox forwards only its own bus's messages,
however many buses share the spool file.
"""

from stalwart.bus.outbox._transport import (
    OutboxTransport,
    SpoolError,
    SpoolStatus,
    destination,
    spool_status,
)

__all__ = ["OutboxTransport", "SpoolError", "SpoolStatus", "destination", "spool_status"]
