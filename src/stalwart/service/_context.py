"""What a handler gets besides its body: the envelope and ways to talk back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from stalwart.config import Settings
from stalwart.envelope import Envelope
from stalwart.ids import stable_id
from stalwart.messages import ReportLevel
from stalwart.service._claim import Attempt

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["Context", "Runner"]


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class Runner(Protocol):
    """What a context asks of the runner that handles its message (a ServiceRunner)."""

    @property
    def service(self) -> _Named: ...
    @property
    def instance(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def settings(self) -> Settings: ...

    async def publish(
        self,
        topic: str,
        body: Any = None,
        *,
        kind: str | None = None,
        ttl: float | None = None,
        **fields: Any,
    ) -> Envelope: ...

    async def request(
        self,
        topic: str,
        body: Any = None,
        *,
        kind: str | None = None,
        timeout: float = 30.0,
        **fields: Any,
    ) -> Envelope: ...

    async def report(
        self, level: ReportLevel | str, text: str, refs: dict[str, str], **fields: Any
    ) -> Envelope: ...

    def store_transaction(
        self, attempt: Attempt
    ) -> AbstractAsyncContextManager[AsyncConnection]: ...

    def add_progress(self, amount: int) -> None: ...


class Context:
    """Per-message context; messages published through it continue the chain.

    Their ``correlation_id`` is the incoming one's (or its id) and their
    ``causation_id`` the incoming id, so the store can show causal chains.
    """

    def __init__(self, runner: Runner, envelope: Envelope, attempt: Attempt) -> None:
        self._runner = runner
        self._attempt = attempt
        self.envelope = envelope
        self.log = logging.LoggerAdapter(
            logging.getLogger(f"stalwart.service.{runner.service.name}"),
            {"message_id": envelope.id, "topic": envelope.topic},
        )

    @property
    def service(self) -> str:
        return self._runner.service.name

    @property
    def instance(self) -> str:
        return self._runner.instance

    @property
    def site(self) -> str:
        return self._runner.site

    @property
    def settings(self) -> Settings:
        return self._runner.settings

    def _chain(self) -> dict[str, Any]:
        return {
            "correlation_id": self.envelope.correlation_id or self.envelope.id,
            "causation_id": self.envelope.id,
        }

    async def publish(
        self,
        topic: str,
        body: Any = None,
        *,
        kind: str | None = None,
        ttl: float | None = None,
        headers: dict[str, str] | None = None,
        id: str | None = None,
    ) -> Envelope:
        """Publish a message caused by this one; returns once it is durable.

        ``id``: the message's id, for example :meth:`stable_id`; a new one if None.
        """
        fields = self._chain() if id is None else {**self._chain(), "id": id}
        return await self._runner.publish(
            topic, body, kind=kind, ttl=ttl, headers=headers, **fields
        )

    def stable_id(self, key: str) -> str:
        """An id that this service gives the message ``key`` whenever it handles this
        message: publish with it a result that a run after a crash publishes again,
        and an idempotent consumer takes the result once (see services.md)."""
        at_ms = int(self.envelope.created_at.timestamp() * 1000)
        return stable_id(at_ms, self.envelope.id, self.service, key)

    async def request(
        self, topic: str, body: Any = None, *, kind: str | None = None, timeout: float = 30.0
    ) -> Envelope:
        """Publish a request and await its reply (raises RequestTimeout)."""
        return await self._runner.request(topic, body, kind=kind, timeout=timeout, **self._chain())

    async def report(
        self, level: ReportLevel | str, text: str, refs: dict[str, str] | None = None
    ) -> Envelope:
        """Report onto ``sys.report.<level>`` with this service as the source."""
        return await self._runner.report(level, text, refs or {}, **self._chain())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on the store database for this handler's effects.

        For an idempotent handler the message's claim is completed in the same
        transaction: the effects and the record that the message was processed
        commit together or not at all, so a redelivery never applies them
        twice. Use one such transaction per handler run. Raises
        StoreUnavailable when the database is away (the message is retried).
        """
        async with self._runner.store_transaction(self._attempt) as conn:
            yield conn

    def progress(self, amount: int = 1) -> None:
        """Advance the progress counter that heartbeats carry (for slow-detection)."""
        self._runner.add_progress(amount)
