"""Bytes that did not decode into an envelope, as a message row and an error report.

The message row is keyed by :func:`stalwart.envelope.message_id_of`, the id
the consuming services record their rejection under too, so the message and
its deliveries join, and ``stalwart messages --kind Undecodable`` lists it.
What the bytes claim is kept where it is valid (topic, sender, correlation
and causation ids, creation time); everything else is a documented
placeholder. The body holds the decode error and the start of the bytes as
text; the bytes themselves stay whole in the dead-letter queue.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

from stalwart.envelope import Envelope, message_id_of, undecodable_id, utcnow
from stalwart.errors import DecodeError, TopicError
from stalwart.store._rows import SEARCH_CHARS, Row, error_report, message_row, printable
from stalwart.topics import validate_topic

__all__ = ["UNDECODABLE_KIND", "UNDECODABLE_SENDER", "UNDECODABLE_TOPIC", "undecodable_rows"]

UNDECODABLE_KIND: Final = "Undecodable"
UNDECODABLE_TOPIC: Final = "undecodable"  # when the bytes claim no valid topic
UNDECODABLE_SENDER: Final = "unknown"  # when they claim no usable sender
_REPORT_PREFIX: Final = 200


def undecodable_rows(raw: bytes, error: DecodeError | None, queue: str) -> tuple[Row, Row]:
    """The message row and the error report for ``raw``, which did not decode."""
    reason = str(error) if error is not None else "undecodable envelope"
    claims = _claims(raw)
    topic = claims.get("topic")
    try:
        topic = validate_topic(topic) if isinstance(topic, str) else UNDECODABLE_TOPIC
    except TopicError:
        topic = UNDECODABLE_TOPIC
    message_id = message_id_of(raw, error)
    text = raw.decode("utf-8", "replace")
    envelope = Envelope.model_construct(
        id=message_id,
        topic=topic,
        kind=UNDECODABLE_KIND,
        sender=_text(claims.get("sender")) or UNDECODABLE_SENDER,
        correlation_id=_text(claims.get("correlation_id")),
        causation_id=_text(claims.get("causation_id")),
        reply_to=None,
        created_at=_time(claims.get("created_at")) or utcnow(),
        expires_at=None,
        headers={},
        body={"error": printable(reason, SEARCH_CHARS), "raw": printable(text, SEARCH_CHARS)},
        token=None,
        attempt=1,
    )
    report = error_report(
        undecodable_id(raw),
        f"undecodable delivery dead-lettered: {reason}",
        {"queue": queue, "message_id": message_id, "raw_prefix": text[:_REPORT_PREFIX]},
    )
    return message_row(envelope, len(raw), utcnow()), report


def _claims(raw: bytes) -> dict[str, Any]:
    """The fields of ``raw`` if it is a JSON object, else nothing."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: object) -> str | None:
    """A claimed string the store keeps as is (a sender, a correlation id), else None."""
    if isinstance(value, str) and 0 < len(value) <= 255 and printable(value, 255) == value:
        return value
    return None


def _time(value: object) -> datetime | None:
    """A claimed ISO-8601 time (UTC if it has no offset), else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
