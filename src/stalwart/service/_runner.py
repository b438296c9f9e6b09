"""Runs one instance of a service on a started transport.

For each delivery: expiry check, routing to a handler by topic and kind, token
check, idempotency check, body validation, then the handler under a timeout
while the delivery's lease is renewed; the outcome settles the delivery and
is recorded as life-cycle transitions. Nothing a message carries can stop the
consumer: every failure ends in a state with a reason.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from stalwart.bus import Delivery, QueueSpec, Transport
from stalwart.config import Settings
from stalwart.envelope import (
    DeliveryState,
    Envelope,
    Transition,
    default_sender,
    undecodable_id,
)
from stalwart.errors import NotAuthorised, RequestTimeout, StalwartError
from stalwart.messages import Report, ReportLevel, report_topic
from stalwart.service._context import Context
from stalwart.service._control import Reject, Retry
from stalwart.service._heartbeat import Counters, HeartbeatSender
from stalwart.service._idempotency import ProcessedIds
from stalwart.service._lifecycle import LifecycleRecorder
from stalwart.service._security import TokenAuthority

if TYPE_CHECKING:
    from stalwart.service._service import Handler, Service

__all__ = ["AckGuard", "ServiceRunner"]

AckGuard = Callable[[], Awaitable[bool]]
_log = logging.getLogger("stalwart.service")


class _Outcome(Exception):
    def __init__(self, state: DeliveryState, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason
        self.delay = delay


class ServiceRunner:
    """One running instance of ``service``; ``start()`` then ``stop(grace)``.

    ``ack_guard``, when given, is awaited before every ack: if it returns
    False the delivery is left unsettled and comes back to another instance
    (high-availability fencing).
    """

    def __init__(
        self,
        service: Service,
        transport: Transport,
        settings: Settings,
        *,
        ack_guard: AckGuard | None = None,
        token: str | None = None,
    ) -> None:
        self.service = service
        self.site = service.site or settings.site
        self._transport = transport
        self.settings = settings
        self._spec: QueueSpec = service.queue_spec(settings)
        self._ack_guard = ack_guard
        self._token = token
        self._nonce = secrets.token_hex(6)
        self.instance = f"{default_sender(service.name, self.site).split('/', 1)[1]}-{self._nonce}"
        self.sender = f"{service.name}@{self.site}/{self.instance}"
        self.counters = Counters()
        self._auth = TokenAuthority(settings.security)
        self._lifecycle = LifecycleRecorder(transport, self.sender)
        self._heartbeat = HeartbeatSender(
            transport,
            service=service.name,
            site=self.site,
            instance=self.instance,
            sender=self.sender,
            interval=service.heartbeat_interval,
            counters=self.counters,
            patterns=list(self._spec.patterns),
        )
        needs_ids = any(h.idempotent for h in service.handlers)
        self._processed = ProcessedIds(settings.store.url, service.name) if needs_ids else None
        self._slots = asyncio.Semaphore(service.concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._consumer: asyncio.Task[None] | None = None
        self._replies: dict[str, asyncio.Future[Envelope]] = {}
        self._reply_topic = f"sys.reply.{service.name}.{self._nonce}"
        self._reply_consumer: asyncio.Task[None] | None = None
        self._reply_ready = asyncio.Lock()
        self.stopped = asyncio.Event()

    # -- life cycle -------------------------------------------------------

    async def start(self) -> None:
        """Declare the queue, then consume, beat and record in owned tasks."""
        if self._processed is not None:
            await self._processed.open()
        await self._transport.declare(self._spec)
        self._lifecycle.start()
        self._heartbeat.start()
        self._consumer = asyncio.create_task(self._consume(), name=f"consume:{self.instance}")
        _log.info(
            "service=%s instance=%s started patterns=%s",
            self.service.name,
            self.instance,
            ",".join(self._spec.patterns),
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking work, let in-flight handlers finish within ``grace``, then cancel.

        Cancelled handlers' messages stay unsettled and are redelivered.
        """
        grace = self.service.grace if grace is None else grace
        for task in (self._consumer, self._reply_consumer):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                _log.warning(
                    "service=%s cancelled %d handlers after %.1fs grace",
                    self.service.name,
                    len(pending),
                    grace,
                )
                await asyncio.gather(*pending, return_exceptions=True)
        await self._heartbeat.close()
        await self._lifecycle.close()
        for future in self._replies.values():
            future.cancel()
        if self._processed is not None:
            await self._processed.close()
        self.stopped.set()
        _log.info(
            "service=%s instance=%s stopped processed=%d failed=%d",
            self.service.name,
            self.instance,
            self.counters.processed,
            self.counters.failed,
        )

    async def _consume(self) -> None:
        deliveries = self._transport.consume(self._spec.name, self.service.concurrency)
        try:
            while True:
                await self._slots.acquire()
                try:
                    delivery = await anext(deliveries)
                except StopAsyncIteration:
                    self._slots.release()
                    return
                task = asyncio.create_task(self._handle(delivery))
                self._inflight.add(task)
                task.add_done_callback(self._finished)
        finally:
            await deliveries.aclose()  # type: ignore[attr-defined]

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            _log.error("handler task crashed", exc_info=task.exception())

    # -- one delivery -----------------------------------------------------

    def _transition(self, delivery: Delivery, state: DeliveryState, reason: str | None) -> None:
        envelope = delivery.envelope
        self._lifecycle.record(
            Transition(
                message_id=envelope.id if envelope else _claimed_id(delivery),
                service=self.service.name,
                state=state,
                reason=reason,
                attempt=delivery.attempt,
                instance=self.instance,
                topic=envelope.topic if envelope else None,
                message_created_at=envelope.created_at if envelope else None,
            )
        )

    async def _handle(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        self.counters.inflight += 1
        try:
            if envelope is None:
                reason = f"undecodable: {delivery.error}"
                await delivery.dead(reason)
                self._transition(delivery, DeliveryState.REJECTED, reason)
                return
            self._transition(delivery, DeliveryState.RECEIVED, None)
            try:
                await self._process(delivery, envelope)
            except _Outcome as outcome:
                await self._settle(delivery, envelope, outcome)
        finally:
            self.counters.inflight -= 1

    async def _process(self, delivery: Delivery, envelope: Envelope) -> None:
        if envelope.expired():
            expiry = f"{envelope.expires_at:%Y-%m-%dT%H:%M:%SZ}"
            raise _Outcome(DeliveryState.EXPIRED, f"expired at {expiry}")
        handler = self._select(envelope)
        if handler.roles:
            try:
                self._auth.verify(envelope.token, handler.roles)
            except NotAuthorised as exc:
                raise _Outcome(DeliveryState.REJECTED, f"not authorised: {exc}") from None
        if handler.idempotent and self._processed and await self._processed.seen(envelope.id):
            raise _Outcome(DeliveryState.CONSUMED, "duplicate: already processed")
        body = self._validate(handler, envelope)
        result = await self._run_handler(delivery, handler, envelope, body)
        if handler.idempotent and self._processed:
            await self._processed.remember(envelope.id)
        if envelope.reply_to and result is not None:
            await self._reply(envelope, result)
        raise _Outcome(DeliveryState.CONSUMED, "")

    def _select(self, envelope: Envelope) -> Handler:
        handlers = self.service.route(envelope.topic)
        if not handlers:
            raise _Outcome(DeliveryState.REJECTED, f"no handler for topic {envelope.topic!r}")
        for handler in handlers:
            if handler.accepts_kind(envelope.kind):
                return handler
        kinds = sorted({k for h in handlers for k in (h.kinds or ())})
        raise _Outcome(
            DeliveryState.REJECTED,
            f"unknown kind {envelope.kind!r} for topic {envelope.topic!r}; accepted: {kinds}",
        )

    @staticmethod
    def _validate(handler: Handler, envelope: Envelope) -> Any:
        if handler.body is None:
            return envelope.body
        try:
            return handler.body.model_validate(envelope.body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            reason = f"invalid {handler.body.__name__}: {problems}"
            raise _Outcome(DeliveryState.REJECTED, reason) from None

    async def _run_handler(
        self, delivery: Delivery, handler: Handler, envelope: Envelope, body: Any
    ) -> Any:
        renewer = asyncio.create_task(self._renew(delivery))
        try:
            async with asyncio.timeout(handler.timeout):
                return await handler.func(Context(self, envelope), body)
        except Retry as exc:
            raise _Outcome(DeliveryState.FAILED, exc.reason, exc.delay) from None
        except Reject as exc:
            raise _Outcome(DeliveryState.REJECTED, exc.reason) from None
        except TimeoutError:
            raise _Outcome(
                DeliveryState.FAILED, f"handler timed out after {handler.timeout}s"
            ) from None
        except Exception as exc:
            _log.warning(
                "handler %s failed on %s attempt %d: %r",
                handler.func.__name__,
                envelope.id,
                delivery.attempt,
                exc,
            )
            raise _Outcome(DeliveryState.FAILED, f"{type(exc).__name__}: {exc}") from None
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)

    async def _renew(self, delivery: Delivery) -> None:
        period = self._spec.lease / 3
        while True:
            await asyncio.sleep(period)
            try:
                await delivery.extend(self._spec.lease)
            except StalwartError as exc:
                _log.warning("lease renewal failed: %s", exc)

    async def _settle(self, delivery: Delivery, envelope: Envelope, outcome: _Outcome) -> None:
        state, reason, attempt = outcome.state, outcome.reason or None, delivery.attempt
        if state in (DeliveryState.CONSUMED, DeliveryState.EXPIRED):
            if self._ack_guard is not None and not await self._ack_guard():
                _log.warning("not acking %s: this instance was fenced out", envelope.id)
                return
            await delivery.ack()
            if state is DeliveryState.CONSUMED:
                self.counters.processed += 1
        elif state is DeliveryState.REJECTED:
            self.counters.failed += 1
            await delivery.dead(reason or "rejected")
        else:
            self.counters.failed += 1
            if not await delivery.retry(outcome.delay, reason or "failed"):
                self._transition(delivery, DeliveryState.FAILED, reason)
                state, reason = DeliveryState.DEAD, f"gave up after {attempt} attempts: {reason}"
        self._transition(delivery, state, reason)

    # -- publishing -------------------------------------------------------

    def _envelope(
        self, topic: str, body: Any, kind: str | None, ttl: float | None, **fields: Any
    ) -> Envelope:
        if self._token is not None:
            fields.setdefault("token", self._token)
        return Envelope.new(
            topic,
            body,
            kind=kind,
            ttl=ttl,
            sender=self.sender,
            **{k: v for k, v in fields.items() if v is not None},
        )

    async def publish(
        self,
        topic: str,
        body: Any = None,
        *,
        kind: str | None = None,
        ttl: float | None = None,
        **fields: Any,
    ) -> Envelope:
        envelope = self._envelope(topic, body, kind, ttl, **fields)
        await self._transport.publish([envelope])
        return envelope

    async def report(
        self, level: ReportLevel | str, text: str, refs: dict[str, str], **fields: Any
    ) -> Envelope:
        body = Report(level=ReportLevel(level), source=self.service.name, text=text, refs=refs)
        return await self.publish(report_topic(level), body, **fields)

    def add_progress(self, amount: int) -> None:
        self.counters.progress = (self.counters.progress or 0) + amount

    async def _reply(self, request: Envelope, result: Any) -> None:
        reply_to = request.reply_to or ""
        await self.publish(
            reply_to,
            result,
            correlation_id=request.correlation_id or request.id,
            causation_id=request.id,
        )

    async def request(
        self,
        topic: str,
        body: Any = None,
        *,
        kind: str | None = None,
        timeout: float = 30.0,
        **fields: Any,
    ) -> Envelope:
        """Publish with ``reply_to`` set and await the reply caused by it."""
        await self._ensure_reply_queue()
        envelope = self._envelope(topic, body, kind, timeout, reply_to=self._reply_topic, **fields)
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._replies[envelope.id] = future
        try:
            await self._transport.publish([envelope])
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise RequestTimeout(
                f"no reply to {topic!r} within {timeout}s; is a service handling it running? "
                "(check `stalwart status`)"
            ) from None
        finally:
            self._replies.pop(envelope.id, None)

    async def _ensure_reply_queue(self) -> None:
        async with self._reply_ready:
            if self._reply_consumer is not None:
                return
            spec = QueueSpec(
                name=f"{self.service.name}-reply-{self._nonce}",
                patterns=(self._reply_topic,),
                ephemeral=True,
                max_attempts=1,
            )
            await self._transport.declare(spec)
            self._reply_consumer = asyncio.create_task(self._take_replies(spec.name))

    async def _take_replies(self, queue: str) -> None:
        replies = self._transport.consume(queue, 64)
        try:
            async for delivery in replies:
                envelope = delivery.envelope
                future = self._replies.get(envelope.causation_id or "") if envelope else None
                if future is not None and not future.done() and envelope is not None:
                    future.set_result(envelope)
                await delivery.ack()
        finally:
            await replies.aclose()  # type: ignore[attr-defined]


def _claimed_id(delivery: Delivery) -> str:
    """The id undecodable bytes claim, else a stable one derived from the bytes."""
    claimed = delivery.error.message_id if delivery.error is not None else None
    return claimed or undecodable_id(delivery.raw)
