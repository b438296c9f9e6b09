"""Reports from batch tools and scripts onto ``sys.report.<level>``.

A report must never be lost because the bus is away: it goes through the
outbox, so when the broker (or the embedded bus file) cannot take it, it is
spooled durably on this host, for that bus only, and forwarded by the next
process that opens the same outbox on the same bus (or `stalwart outbox
flush`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

from stalwart.bus import Transport, open_bus, redact_url
from stalwart.bus.outbox import OutboxTransport
from stalwart.config import Settings
from stalwart.envelope import Envelope, default_sender
from stalwart.errors import BrokerUnavailable
from stalwart.messages import Report, ReportLevel, report_topic

__all__ = ["ReportReceipt", "report", "report_sync"]


@dataclass(frozen=True, slots=True)
class ReportReceipt:
    """Where a report went: ``published`` to the bus, or ``spooled`` locally."""

    message_id: str
    topic: str
    outcome: str
    where: str

    def __str__(self) -> str:
        if self.outcome == "published":
            return f"report {self.message_id} published on {self.topic} at {self.where}"
        return (
            f"report {self.message_id} spooled to {self.where}: the bus is unreachable; "
            "once it is back, `stalwart outbox flush` forwards it (so does the next "
            "`stalwart report` that reaches that bus)"
        )


def _through_outbox(settings: Settings) -> OutboxTransport:
    transport: Transport = open_bus(settings)
    if isinstance(transport, OutboxTransport):
        return transport
    return OutboxTransport(
        transport,
        settings.bus.outbox,
        publish_timeout=5.0,
        max_message_size=settings.bus.max_message_size,
    )


async def report(
    level: ReportLevel | str,
    text: str,
    *,
    source: str,
    settings: Settings,
    refs: dict[str, str] | None = None,
    flush_timeout: float = 2.0,
) -> ReportReceipt:
    """Publish a report; when the bus is unreachable, spool it and say so."""
    body = Report(
        level=ReportLevel(level),
        source=source,
        text=text,
        refs=refs or {},
        host=socket.gethostname(),
    )
    envelope = Envelope.new(report_topic(level), body, sender=default_sender(source, settings.site))
    transport = _through_outbox(settings)
    await transport.start()
    try:
        await transport.publish([envelope])
        if await transport.pending():
            with contextlib.suppress(BrokerUnavailable):  # stays spooled, said below
                await transport.flush(timeout=flush_timeout)
        spooled = await transport.pending() > 0
    finally:
        await transport.close()
    if spooled:
        return ReportReceipt(envelope.id, envelope.topic, "spooled", transport.spool_path)
    return ReportReceipt(envelope.id, envelope.topic, "published", redact_url(settings.bus.url))


def report_sync(
    level: ReportLevel | str,
    text: str,
    *,
    source: str,
    settings: Settings,
    refs: dict[str, str] | None = None,
) -> ReportReceipt:
    """:func:`report` for synchronous code (scripts, batch tools)."""
    return asyncio.run(report(level, text, source=source, settings=settings, refs=refs))
