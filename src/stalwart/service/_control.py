"""Exceptions a handler raises to steer what happens to its message."""

from __future__ import annotations

__all__ = ["HandlerControl", "Reject", "Retry"]


class HandlerControl(Exception):
    """Base of the control exceptions; never escapes the runtime."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Retry(HandlerControl):
    """Try this message again after ``delay`` seconds (None: the queue's backoff).

    The attempt counts; after the queue's last attempt the message is dead.
    """

    def __init__(self, reason: str = "retry requested", delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class Reject(HandlerControl):
    """Give up on this message now: it ends ``rejected`` in the dead-letter queue."""
