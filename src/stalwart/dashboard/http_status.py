"""Which HTTP status a stalwart error is, so a client knows whom to blame.

Bad input is the client's to fix (400), a missing permission is 403, and only
a part the dashboard needs being away (bus, store, ``dot``) is 503, which a
client may retry. A thing that does not exist is a 404 its endpoint answers
itself (no message, no queue). Anything else is the dashboard's own fault
(500): retrying will not help, the log says what happened.
"""

from __future__ import annotations

from fastapi import HTTPException

from stalwart.dashboard.layout import LayoutError
from stalwart.errors import (
    DecodeError,
    MessageTooLarge,
    NotAuthorised,
    RequestTimeout,
    StalwartError,
    StoreUnavailable,
    TransportError,
)

__all__ = ["http_error", "http_status"]

_UNAVAILABLE = (TransportError, StoreUnavailable, RequestTimeout, LayoutError)


def http_status(exc: StalwartError) -> int:
    """400 bad input, 403 not allowed, 503 unavailable, else 500."""
    if isinstance(exc, ValueError | DecodeError | MessageTooLarge):
        return 400  # TopicError, BadCursor, TimeFormatError, ...: say what to fix
    if isinstance(exc, NotAuthorised):
        return 403
    if isinstance(exc, _UNAVAILABLE):
        return 503
    return 500


def http_error(exc: StalwartError) -> HTTPException:
    """``exc`` as the HTTPException to raise, its message as the detail."""
    return HTTPException(http_status(exc), str(exc))
