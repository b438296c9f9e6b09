"""The envelope (one message), delivery states, and the wire codec.

Encoding and decoding happen here and nowhere else. The wire format is JSON
(UTF-8), documented in ``docs/wire-format.md`` so that clients in other
languages can take part.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import socket
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stalwart.errors import DecodeError, MessageTooLarge
from stalwart.ids import new_id
from stalwart.topics import validate_topic

__all__ = [
    "DEFAULT_MAX_SIZE",
    "TERMINAL_STATES",
    "WIRE_VERSION",
    "DeliveryState",
    "Envelope",
    "Transition",
    "decode",
    "default_sender",
    "encode",
    "merge_state",
    "message_id_of",
    "state_rank",
    "undecodable_id",
    "utcnow",
]

WIRE_VERSION: Final = 1
_VERSION_SUFFIX: Final = f',"v":{WIRE_VERSION}}}'.encode()
DEFAULT_MAX_SIZE: Final = 1024 * 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_sender(service: str = "anonymous", site: str = "local") -> str:
    """``service@site/instance`` with this host and pid as the instance."""
    return f"{service}@{site}/{socket.gethostname()}-{os.getpid()}"


class DeliveryState(enum.StrEnum):
    """Life-cycle states of one message at one service (ADAPT's, extended)."""

    SENT = "sent"
    RECEIVED = "received"
    FAILED = "failed"
    CONSUMED = "consumed"
    DEAD = "dead"
    EXPIRED = "expired"
    REJECTED = "rejected"


TERMINAL_STATES: Final = frozenset(
    {DeliveryState.CONSUMED, DeliveryState.DEAD, DeliveryState.EXPIRED, DeliveryState.REJECTED}
)

# Forward-only order. Terminal states outrank everything; among terminals a
# fixed precedence makes the merge commutative (a consumed message that was
# also dead-lettered by a duplicate delivery still counts as consumed).
_RANK: Final = {
    DeliveryState.SENT: 0,
    DeliveryState.RECEIVED: 1,
    DeliveryState.FAILED: 2,
    DeliveryState.EXPIRED: 3,
    DeliveryState.REJECTED: 4,
    DeliveryState.DEAD: 5,
    DeliveryState.CONSUMED: 6,
}


def merge_state(current: DeliveryState | None, incoming: DeliveryState) -> DeliveryState:
    """The state after applying ``incoming`` to ``current``; never moves back.

    Associative, commutative and idempotent, so transitions may arrive in any
    order, any number of times, and converge to the same state.
    """
    if current is None or _RANK[incoming] > _RANK[current]:
        return incoming
    return current


def state_rank(state: DeliveryState) -> int:
    """Position of ``state`` in the forward-only order (for SQL merges)."""
    return _RANK[state]


class Envelope(BaseModel):
    """One immutable message. Build with :meth:`new`; change with :meth:`evolve`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    topic: str
    kind: str = Field(default="Message", min_length=1, max_length=200)
    sender: str = Field(default="anonymous@local/0", max_length=255)
    correlation_id: str | None = None
    causation_id: str | None = None
    reply_to: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    token: str | None = Field(default=None, repr=False)
    attempt: int = Field(default=1, ge=1)

    @field_validator("topic")
    @classmethod
    def _topic_ok(cls, value: str) -> str:
        return validate_topic(value)

    @field_validator("created_at", "expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @classmethod
    def new(
        cls,
        topic: str,
        body: Any = None,
        *,
        kind: str | None = None,
        ttl: float | None = None,
        **fields: Any,
    ) -> Envelope:
        """A new envelope; ``body`` may be a pydantic model (its class names the kind)."""
        validate_topic(topic)  # a TopicError with advice, not a validation dump
        if isinstance(body, BaseModel):
            kind = kind or type(body).__name__
            body = body.model_dump(mode="json")
        created = fields.pop("created_at", None) or utcnow()
        if ttl is not None:
            fields["expires_at"] = created + timedelta(seconds=ttl)
        return cls(topic=topic, body=body, kind=kind or "Message", created_at=created, **fields)

    def evolve(self, **changes: Any) -> Envelope:
        """A copy with ``changes`` applied and validated."""
        return type(self).model_validate({**self.model_dump(), **changes})

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or utcnow()) >= self.expires_at

    def redacted(self) -> dict[str, Any]:
        """A JSON-ready dict safe to print or log: the token is masked."""
        data = self.model_dump(mode="json")
        if data.get("token"):
            data["token"] = "***"
        return data


class Transition(BaseModel):
    """One time-stamped life-cycle state of a message at a service."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str
    service: str
    state: DeliveryState
    at: datetime = Field(default_factory=utcnow)
    reason: str | None = None
    attempt: int = 1
    instance: str | None = None
    topic: str | None = None
    # The message's own created_at: the store pages a service's deliveries in
    # message time without reading each message.
    message_created_at: datetime | None = None


_SERIALIZER: Final = Envelope.__pydantic_serializer__


def encode(envelope: Envelope, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Envelope -> UTF-8 JSON bytes; raises :class:`MessageTooLarge` over ``max_size``."""
    # pydantic's JSON serialiser is several times faster than model_dump + json.dumps and
    # gives the same compact UTF-8 JSON; the version goes last. Called directly, it hands
    # back bytes: model_dump_json's argument handling and str round trip cost as much.
    raw = _SERIALIZER.to_json(envelope, exclude_none=True)[:-1] + _VERSION_SUFFIX
    if len(raw) > max_size:
        raise MessageTooLarge(len(raw), max_size)
    return raw


def looks_encoded(raw: bytes) -> bool:
    """Whether ``raw`` has the shape :func:`encode` gives (a cheap check, not a decode)."""
    return raw.startswith(b"{") and raw.endswith(_VERSION_SUFFIX)


def undecodable_id(raw: bytes) -> str:
    """A stable id for bytes that carry no readable one: a redelivery maps to the same id."""
    return "raw-" + hashlib.blake2b(raw, digest_size=16).hexdigest()


# An id as Envelope.id allows it (1 to 64 characters), without control
# characters or lone surrogates, which no database stores as text.
_STORABLE_ID: Final = re.compile("[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,64}")


def message_id_of(raw: bytes, error: DecodeError | None) -> str:
    """The one id under which input that did not decode is recorded, by service and store alike.

    The id the bytes claim (``error.message_id``) when it is a valid envelope
    id without control characters, so that the sender's id joins what
    happened to it; otherwise :func:`undecodable_id` of the bytes (``raw-``
    and 32 hex digits), the same for every copy of them.
    """
    claimed = error.message_id if error is not None else None
    if claimed is not None and _STORABLE_ID.fullmatch(claimed):
        return claimed
    return undecodable_id(raw)


def decode(raw: bytes | str) -> Envelope:
    """UTF-8 JSON bytes -> Envelope; raises :class:`DecodeError` carrying ``raw``.

    An envelope without an id gets :func:`undecodable_id` of its bytes, so every
    reader of the same bytes (each service, the store) gives it the same id.
    """
    envelope = _decode(raw)
    if "id" in envelope.model_fields_set:
        return envelope
    return envelope.model_copy(update={"id": undecodable_id(_as_bytes(raw))})


def _as_bytes(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")


def _decode(raw: bytes | str) -> Envelope:
    if isinstance(raw, bytes) and raw.endswith(_VERSION_SUFFIX):
        # Fast path for what encode() wrote; anything unusual takes the careful path below.
        try:
            return Envelope.model_validate_json(raw[: -len(_VERSION_SUFFIX)] + b"}")
        except ValidationError:
            pass
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DecodeError(f"not a JSON envelope: {exc}", raw) from None
    if not isinstance(data, dict):
        raise DecodeError("envelope must be a JSON object", raw)
    claimed = str(data["id"]) if isinstance(data.get("id"), str | int) else None
    version = data.pop("v", WIRE_VERSION)
    if version != WIRE_VERSION:
        raise DecodeError(
            f"unsupported wire version {version!r} (this is {WIRE_VERSION})", raw, claimed
        )
    try:
        return Envelope.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'envelope'}: {e['msg']}" for e in exc.errors()
        )
        raise DecodeError(f"invalid envelope: {problems}", raw, claimed) from None
