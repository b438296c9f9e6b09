"""Envelopes to AMQP messages and back.

The JSON body (see ``stalwart.envelope``) is authoritative; AMQP properties
mirror some of its fields so that plain AMQP tools can route, filter and read
them without parsing the body. Bodies that do not decode are kept raw.

What the transport publishes is an :data:`Outgoing`, the body and the
protocol's property frame, made directly: an ``aio_pika.Message`` costs
several times more to build, on every publish, for the same bytes on the wire.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, DeliveryMode
from aiormq import spec

from stalwart.bus._transport import EncodedMessage, within_limit
from stalwart.bus.amqp._names import ATTEMPT_HEADER
from stalwart.envelope import Envelope, decode, encode, utcnow
from stalwart.errors import DecodeError

__all__ = [
    "Outgoing",
    "copy_message",
    "decode_incoming",
    "encoded_message",
    "expiration_ms",
    "header_int",
    "to_message",
]

# Headers the broker adds that must not follow a message when it is copied.
_BROKER_HEADERS = frozenset(
    {
        "x-death",
        "x-delivery-count",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)

# A message to publish: its body and its properties.
Outgoing = tuple[bytes, spec.Basic.Properties]


def expiration_ms(expires_at: datetime | None, now: datetime | None = None) -> int | None:
    """Milliseconds left before ``expires_at`` (0 if already past), None without a TTL."""
    if expires_at is None:
        return None
    left = (expires_at - (now or utcnow())).total_seconds()
    return max(0, int(left * 1000))


def to_message(envelope: Envelope, max_size: int) -> Outgoing:
    """A persistent AMQP message for ``envelope``; raises MessageTooLarge over ``max_size``."""
    return _message(
        encode(envelope, max_size),
        envelope.id,
        envelope.correlation_id,
        envelope.reply_to,
        envelope.kind,
        envelope.created_at,
        envelope.expires_at,
        envelope.attempt,
    )


def encoded_message(row: EncodedMessage, max_size: int) -> Outgoing:
    """:func:`to_message` for an envelope already encoded: the body is ``row.data`` as it
    is; the properties that mirror its fields are read with a plain JSON parse."""
    fields: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        parsed = json.loads(within_limit(row.data, max_size))
        fields = parsed if isinstance(parsed, dict) else {}
    attempt = fields.get("attempt")
    return _message(
        row.data,
        row.id,
        _text(fields.get("correlation_id")),
        _text(fields.get("reply_to")),
        _text(fields.get("kind")) or "Message",
        _moment(fields.get("created_at")) or utcnow(),
        _moment(fields.get("expires_at")),
        attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 1,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _moment(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def _message(
    body: bytes,
    message_id: str,
    correlation_id: str | None,
    reply_to: str | None,
    kind: str,
    created_at: datetime,
    expires_at: datetime | None,
    attempt: int,
) -> Outgoing:
    expiration = expiration_ms(expires_at)
    # The properties aio_pika.Message would give (an empty header table, priority 0).
    return body, spec.Basic.Properties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={ATTEMPT_HEADER: attempt} if attempt > 1 else {},
        delivery_mode=DeliveryMode.PERSISTENT,
        priority=0,
        correlation_id=correlation_id,
        reply_to=reply_to,
        expiration=None if expiration is None else str(expiration),
        message_id=message_id,
        timestamp=created_at,
        message_type=kind,
    )


def copy_message(
    incoming: AbstractIncomingMessage,
    headers: dict[str, Any],
    expires_at: datetime | None,
    drop: frozenset[str] = frozenset(),
) -> aio_pika.Message:
    """A persistent copy of ``incoming`` with ``headers`` merged over its own minus ``drop``."""
    skip = _BROKER_HEADERS | drop
    merged = {k: v for k, v in (incoming.headers or {}).items() if k not in skip}
    merged.update(headers)
    expiration = expiration_ms(expires_at)
    return aio_pika.Message(
        incoming.body,
        content_type=incoming.content_type or "application/json",
        content_encoding=incoming.content_encoding,
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=incoming.message_id,
        correlation_id=incoming.correlation_id,
        reply_to=incoming.reply_to,
        type=incoming.type,
        timestamp=incoming.timestamp or datetime.now(UTC),
        expiration=None if expiration is None else expiration / 1000.0,
        headers=merged,
    )


def header_int(headers: dict[str, Any] | None, name: str, default: int) -> int:
    value = (headers or {}).get(name)
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, int):
        return value
    try:
        return int(str(value.decode() if isinstance(value, bytes) else value))
    except ValueError:
        return default


def decode_incoming(
    body: bytes, headers: dict[str, Any] | None, redelivered: bool
) -> tuple[Envelope | None, DecodeError | None, int]:
    """The envelope (or the decode error) and the attempt number of a delivered message.

    The attempt is the ``x-stalwart-attempt`` header (else the envelope's
    own), plus the broker's count of redeliveries of this copy: quorum
    queues' ``x-delivery-count``, or one for a classic queue's redelivered flag.
    """
    try:
        envelope: Envelope | None = decode(body)
        error = None
    except DecodeError as exc:
        envelope, error = None, exc
    base = header_int(headers, ATTEMPT_HEADER, envelope.attempt if envelope else 1)
    redeliveries = header_int(headers, "x-delivery-count", 1 if redelivered else 0)
    attempt = max(1, base + redeliveries)
    if envelope is not None and envelope.attempt != attempt:
        envelope = envelope.evolve(attempt=attempt)
    return envelope, error, attempt
