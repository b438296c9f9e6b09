"""What the transports' deliveries share: the decoded message, and settling once by copy.

RabbitMQ and NATS cannot move a message to the dead-letter queue, or give it
back without counting an attempt, so their deliveries do it by publishing a
copy and only then acking the original: a crash in between delivers it twice
but never loses it. :class:`SettleOnce` holds that logic once; each transport
keeps its own leases and how it tells its broker.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import ClassVar

from stalwart.bus._transport import QueueSpec, backoff_delay
from stalwart.envelope import Envelope
from stalwart.errors import DecodeError

__all__ = ["Decoded", "SettleOnce"]


class Decoded:
    """The envelope a delivery carries, or the DecodeError that stopped it (``raw`` keeps
    the bytes)."""

    __slots__ = ("_envelope", "_error")

    _envelope: Envelope | None
    _error: DecodeError | None

    @property
    def envelope(self) -> Envelope | None:
        return self._envelope

    @property
    def error(self) -> DecodeError | None:
        return self._error


class SettleOnce(Decoded, ABC):
    """A broker's delivery: the first settle wins, later ones are logged and ignored.

    A retry past the queue's ``max_attempts`` goes to the dead letters; a
    release and a dead letter are a copy published before the original is
    acked (the original goes back to the broker if the copy failed).
    """

    _log: ClassVar[logging.Logger]
    # What a failed release copy may raise and still leave the original given back.
    _copy_errors: ClassVar[tuple[type[Exception], ...]]

    queue: str
    attempt: int
    raw: bytes
    _settled: bool

    @property
    @abstractmethod
    def spec(self) -> QueueSpec: ...

    @property
    @abstractmethod
    def _described(self) -> str:
        """How log lines name it: ``message ... in <queue>``."""

    @abstractmethod
    def _claimed(self, action: str) -> bool:
        """Just marked settled: stop its lease; False if ``action`` must not go ahead."""

    @abstractmethod
    async def _retry_after(self, wait: float, reason: str) -> None:
        """Have the broker deliver it again after ``wait`` seconds, counted as an attempt."""

    @abstractmethod
    async def _publish_copy(self, delay: float | None, reason: str, attempt: int) -> None:
        """Publish the copy that carries on (``delay`` None: to the dead letters)."""

    @abstractmethod
    async def _broker_ack(self) -> None: ...

    @abstractmethod
    async def _broker_requeue(self) -> None: ...

    @abstractmethod
    def _release_failed(self, exc: Exception) -> None: ...

    def _claim(self, action: str) -> bool:
        if self._settled:
            self._log.warning("%s already settled or released; %s ignored", self._described, action)
            return False
        self._settled = True
        return self._claimed(action)

    async def ack(self) -> None:
        if self._claim("ack"):
            await self._broker_ack()

    async def retry(self, delay: float | None, reason: str) -> bool:
        spec = self.spec
        if self.attempt >= spec.max_attempts:
            await self.dead(f"{reason} (after {self.attempt} attempts)")
            return False
        if self._claim("retry"):
            wait = backoff_delay(spec, self.attempt) if delay is None else max(0.0, delay)
            await self._retry_after(wait, reason)
        return True

    async def dead(self, reason: str) -> None:
        if self._claim("dead"):
            await self._replace(None, reason, self.attempt)

    async def release(self) -> None:
        # A copy at the same attempt: the broker counts a plain requeue as an attempt.
        if not self._claim("release"):
            return
        try:
            await self._replace(0.0, "released unprocessed", self.attempt)
        except self._copy_errors as exc:
            self._release_failed(exc)

    async def _replace(self, delay: float | None, reason: str, attempt: int) -> None:
        """Publish the copy that carries on, then ack this one (requeue it if the copy failed)."""
        try:
            await self._publish_copy(delay, reason, attempt)
        except BaseException:
            await self._broker_requeue()
            raise
        await self._broker_ack()
