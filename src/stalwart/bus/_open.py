"""Open the bus a process should use, from its settings."""

from __future__ import annotations

from stalwart.bus._factory import open_transport
from stalwart.bus._transport import Transport
from stalwart.bus.outbox import OutboxTransport
from stalwart.config import Settings

__all__ = ["open_bus"]


def open_bus(settings: Settings, *, outbox: bool = True) -> Transport:
    """The configured transport (not yet started), with the size limit and broker options.

    ``outbox=False`` leaves out the spool, for readers that never publish.
    """
    bus = settings.bus
    transport = open_transport(
        bus.url,
        max_message_size=bus.max_message_size,
        exchange=bus.exchange,
        queue_type=bus.queue_type,
        durability=bus.durability,
    )
    if not outbox or bus.url.partition("://")[0].lower() == "sqlite":
        return transport  # embedded: already durable on this host
    # Network brokers go through the store-and-forward spool at bus.outbox.
    return OutboxTransport(
        transport,
        bus.outbox,
        durability=bus.durability,
        max_message_size=bus.max_message_size,
    )
