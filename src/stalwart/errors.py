"""One error hierarchy for the whole package.

Every error a user can see is a :class:`StalwartError` whose message says what
went wrong and what to do next. Vendor exceptions (aio-pika, asyncpg, sqlite3,
...) are translated at the boundary: ``raise BrokerUnavailable(...) from exc``.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EX_CONFIG",
    "BrokerUnavailable",
    "ConfigError",
    "DecodeError",
    "FencedOut",
    "IntegrityError",
    "MessageTooLarge",
    "NotAuthorised",
    "PublishRefused",
    "RequestTimeout",
    "StalwartError",
    "StoreUnavailable",
    "TopicError",
    "TransportClosed",
    "TransportError",
    "exit_status",
    "first_line",
]


EX_CONFIG: Final = 78
"""Exit status of a process stopped by a :class:`ConfigError` (``EX_CONFIG`` of
sysexits.h): restarting it cannot help, so the watchdog does not."""


def exit_status(exc: BaseException) -> int:
    """The status a process stopped by ``exc`` exits with: 78 for a configuration error."""
    return EX_CONFIG if isinstance(exc, ConfigError) else 1


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when it has none): a
    database driver's error carries the whole statement and its parameters on the
    lines after it, far too much for a log line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class StalwartError(Exception):
    """Root of every error raised by stalwart."""


class ConfigError(StalwartError):
    """The configuration is invalid or incomplete; a command stops with :data:`EX_CONFIG`."""


class TopicError(StalwartError, ValueError):
    """A topic or topic pattern is malformed."""


class DecodeError(StalwartError):
    """Raw bytes could not be decoded into an envelope or a typed body.

    The raw data is kept so that nothing is lost: it can be dead-lettered or
    stored as-is for inspection. ``message_id`` is the id the data claims,
    when it could be read, so the message's rejection can be recorded under it.
    """

    def __init__(
        self, message: str, raw: bytes | str | None = None, message_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.raw = raw
        self.message_id = message_id


class MessageTooLarge(StalwartError):
    """An encoded envelope exceeds the configured size limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"message is {size} bytes, over the limit of {limit} bytes; store large data as a "
            "file (see `stalwart integrity ingest`) and send its path, or raise "
            "bus.max_message_size"
        )
        self.size = size
        self.limit = limit


class NotAuthorised(StalwartError):
    """A message's token is missing, invalid, expired or lacks a required role."""


class TransportError(StalwartError):
    """Base for errors raised by a bus transport."""


class BrokerUnavailable(TransportError):
    """The broker cannot be reached or did not confirm in time."""


class PublishRefused(TransportError):
    """The broker refused a message (nack, unroutable under mandatory, ...)."""


class TransportClosed(TransportError):
    """The transport was used after close()."""


class RequestTimeout(StalwartError, TimeoutError):
    """A request got no reply within its timeout."""


class StoreUnavailable(StalwartError):
    """The message store (SQLite or PostgreSQL) cannot be reached."""


class FencedOut(StalwartError):
    """A write carried a fencing token older than the current lease's."""


class IntegrityError(StalwartError):
    """Data failed verification and could not be repaired."""
