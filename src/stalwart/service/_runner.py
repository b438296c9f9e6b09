"""Runs one instance of a service on a started transport.

For each delivery: size and decode checks, expiry, routing to a handler by
topic and kind, token check, body validation, the claim on the message id
(idempotent handlers), then the handler under a timeout while the delivery's
lease (and claim) is renewed. The outcome's final state is made durable on
``sys.lifecycle`` first, then the delivery is settled, so a kill in between
loses no state. Nothing a message carries can stop the consumer: every
failure, a store outage included, ends in a state with a reason. An instance
fenced out by HA (``ack_guard``) starts no handler and settles nothing: it
gives its deliveries back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from stalwart.backoff import Backoff
from stalwart.bus import Counters, Delivery, HeartbeatSender, QueueSpec, Transport, consume_forever
from stalwart.config import Settings
from stalwart.envelope import (
    DeliveryState,
    Envelope,
    Transition,
    default_sender,
    message_id_of,
    utcnow,
)
from stalwart.errors import (
    BrokerUnavailable,
    NotAuthorised,
    RequestTimeout,
    StalwartError,
    StoreUnavailable,
)
from stalwart.messages import Report, ReportLevel, report_topic
from stalwart.service._batch import GroupCommit
from stalwart.service._claim import Attempt, Claim, ClaimLost, ClaimState
from stalwart.service._context import Context
from stalwart.service._control import Reject, Retry
from stalwart.service._lifecycle import LifecycleRecorder
from stalwart.service._security import TokenAuthority

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from stalwart.service._service import Handler, Service
    from stalwart.service.claims import Claims

__all__ = ["AckGuard", "Attempt", "Outcome", "ServiceRunner"]

AckGuard = Callable[[], Awaitable[bool]]
_PRUNE_EVERY = 3600.0
_WINDOW = 4  # deliveries held per handler slot (see ServiceRunner._window)
_STORE_AWAY_CAP = 5.0  # seconds at most between tries while the store is away
_GIVE_BACK_WITHIN = 5.0  # seconds a cancelled handler's release may take (stop waits for it)
_REPLY_WITHOUT_TTL = 60.0  # seconds a reply is tried for when its request never expires
_RECONSUME_INITIAL, _RECONSUME_CAP = 0.5, 15.0  # pause before consuming again (seconds)
_log = logging.getLogger("stalwart.service")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one delivery ended: the state to record and how to settle it."""

    state: DeliveryState
    reason: str | None = None
    delay: float | None = None  # for FAILED: None is the queue's backoff
    # FAILED because the store was away: not the message's fault, so given back
    # after a pause without counting an attempt (an outage must not kill messages).
    store_away: bool = False


_CONSUMED = Outcome(DeliveryState.CONSUMED)
_DUPLICATE = Outcome(DeliveryState.CONSUMED, "duplicate: already processed")


class _Refused(Exception):
    """A check refused the delivery (rejected, expired, failed): carries the outcome."""

    def __init__(self, state: DeliveryState, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.outcome = Outcome(state, reason, delay)


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
        self._lifecycle = LifecycleRecorder(transport, self.sender, token=token)
        self._heartbeat = HeartbeatSender(
            transport,
            service=service.name,
            site=self.site,
            instance=self.instance,
            sender=self.sender,
            interval=service.heartbeat_interval,
            counters=self.counters,
            patterns=list(self._spec.patterns),
            token=token,
        )
        self._claims: Claims | None = None
        self._claim_batch: GroupCommit[tuple[str, str], Claim] | None = None
        self._complete_batch: GroupCommit[tuple[str, str], ClaimLost | None] | None = None
        # Handlers run in `concurrency` slots; more deliveries may be held,
        # so that handlers do not idle while finished ones wait for their final
        # state to be durable and for their ack.
        self._slots = asyncio.Semaphore(service.concurrency)
        # One pace for every delivery that met the store away: it grows while the
        # outage lasts and starts over at the first message that succeeds. Each
        # concurrent failure raises it, so its cap is short: with the queue's 60 s,
        # eight handlers failing at one restart of PostgreSQL (back in 0.1 s) then
        # slept 30 to 60 s each before giving their messages back.
        cap = min(self._spec.retry_max, _STORE_AWAY_CAP)
        self._store_pace = Backoff(initial=min(self._spec.retry_initial, cap), cap=cap)
        self._window = asyncio.Semaphore(_WINDOW * service.concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._consumer: asyncio.Task[None] | None = None
        self._replies: dict[str, asyncio.Future[Envelope]] = {}
        self._reply_topic = f"sys.reply.{service.name}.{self._nonce}"
        self._reply_consumer: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._reply_ready = asyncio.Lock()
        self.stopped = asyncio.Event()

    # -- life cycle -------------------------------------------------------

    async def start(self) -> None:
        """Declare the queue, then consume, beat and record in owned tasks.

        Raises BrokerUnavailable or StoreUnavailable, having started nothing,
        when the bus or the store is down.
        """
        idempotent = any(h.idempotent for h in self.service.handlers)
        if idempotent:
            await self._claims_store().open()
        await self._transport.declare(self._spec)
        # Nothing runs before both answered, so a start that failed can be tried again.
        if idempotent:
            self._pruner = asyncio.create_task(self._prune_claims(), name="prune-claims")
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
        for task in (self._consumer, self._reply_consumer, self._pruner):
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
        for batch in (self._claim_batch, self._complete_batch):
            if batch is not None:
                await batch.close()
        if self._claims is not None:
            await self._claims.close()
        self.stopped.set()
        _log.info(
            "service=%s instance=%s stopped processed=%d failed=%d",
            self.service.name,
            self.instance,
            self.counters.processed,
            self.counters.failed,
        )

    async def _consume(self) -> None:
        """Hand each delivery to a handler task, as slots free up, until the transport
        closes (a consumer that ends or fails is started again: :func:`consume_forever`)."""
        deliveries = consume_forever(
            self._transport,
            self._spec,
            _WINDOW * self.service.concurrency,
            pace=Backoff(_RECONSUME_INITIAL, _RECONSUME_CAP),
            label=f"service={self.service.name} instance={self.instance}",
        )
        try:
            while True:
                await self._window.acquire()
                try:
                    delivery = await anext(deliveries)
                except StopAsyncIteration:
                    self._window.release()
                    return
                except BaseException:
                    self._window.release()
                    raise
                task = asyncio.create_task(self._handle(delivery))
                self._inflight.add(task)
                task.add_done_callback(self._finished)
        finally:
            await deliveries.aclose()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._window.release()
        if not task.cancelled() and task.exception() is not None:
            _log.error("handler task crashed", exc_info=task.exception())

    # -- one delivery -----------------------------------------------------

    def _transition(
        self, delivery: Delivery, state: DeliveryState, reason: str | None
    ) -> Transition:
        envelope = delivery.envelope
        return Transition(
            message_id=envelope.id if envelope else message_id_of(delivery.raw, delivery.error),
            service=self.service.name,
            state=state,
            reason=reason,
            attempt=delivery.attempt,
            instance=self.instance,
            topic=envelope.topic if envelope else None,
            message_created_at=envelope.created_at if envelope else None,
        )

    async def _may_act(self) -> bool:
        """False once this instance is fenced out (HA): it must start and settle nothing."""
        return self._ack_guard is None or await self._ack_guard()

    async def _handle(self, delivery: Delivery) -> None:
        self.counters.inflight += 1
        envelope = delivery.envelope
        attempt = Attempt(
            envelope.id if envelope else message_id_of(delivery.raw, delivery.error),
            f"{self.instance}/{secrets.token_hex(4)}",
        )
        renewer = asyncio.create_task(self._renew(delivery, attempt))
        try:
            async with self._slots:
                outcome = await self._outcome(delivery, attempt)
            if outcome is None or not await self._may_act():
                _log.warning("giving %s back: this instance was fenced out", attempt.message_id)
                await delivery.release()
                return
            await self._settle(delivery, outcome)
        except StalwartError as exc:  # the bus is away: unsettled, it comes back
            _log.warning(
                "could not settle %s (%s); it will be redelivered", attempt.message_id, exc
            )
        except asyncio.CancelledError:
            await self._give_back(delivery)
            raise
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            self.counters.inflight -= 1

    @staticmethod
    async def _give_back(delivery: Delivery) -> None:
        """Release a delivery whose handler was cancelled (stopped past its grace, as when
        an HA leader loses its lease). Unsettled, it would stay with this process's
        consumer, which lives on while the process does (an HA standby), until its lease
        ran out; released, another instance takes it now. Already settled: nothing."""
        with contextlib.suppress(StalwartError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(delivery.release()), _GIVE_BACK_WITHIN)

    async def _outcome(self, delivery: Delivery, attempt: Attempt) -> Outcome | None:
        """Run the checks and the handler; None when fenced out before the handler ran."""
        try:
            return await self._process(delivery, attempt)
        except _Refused as refused:
            return refused.outcome
        except StoreUnavailable as exc:
            return Outcome(DeliveryState.FAILED, str(exc), store_away=True)
        except ClaimLost as exc:
            return Outcome(DeliveryState.FAILED, str(exc))
        finally:
            if attempt.claimed and not attempt.completed:
                with contextlib.suppress(StalwartError):  # else its lease runs out
                    await self._claims_store().release(attempt.message_id, attempt.claimer)

    def _admit(self, delivery: Delivery) -> Envelope:
        """The envelope, if it decoded and keeps the bus's size limit."""
        limit = self.settings.bus.max_message_size
        if delivery.envelope is None:
            raise _Refused(DeliveryState.REJECTED, f"undecodable: {delivery.error}")
        if len(delivery.raw) > limit:
            raise _Refused(
                DeliveryState.REJECTED,
                f"too large: {len(delivery.raw)} bytes, over the bus limit of {limit} bytes "
                "(bus.max_message_size)",
            )
        return delivery.envelope

    async def _process(self, delivery: Delivery, attempt: Attempt) -> Outcome | None:
        envelope = self._admit(delivery)
        self._lifecycle.record(self._transition(delivery, DeliveryState.RECEIVED, None))
        if not await self._may_act():
            return None
        if envelope.expired():
            expiry = f"{envelope.expires_at:%Y-%m-%dT%H:%M:%SZ}"
            raise _Refused(DeliveryState.EXPIRED, f"expired at {expiry}")
        handler = self._select(envelope)
        if handler.roles:
            try:
                self._auth.verify(envelope.token, handler.roles)
            except NotAuthorised as exc:
                raise _Refused(DeliveryState.REJECTED, f"not authorised: {exc}") from None
        body = self._validate(handler, envelope)
        if handler.idempotent:
            if not await self._claim(attempt):
                return _DUPLICATE
            if not await self._may_act():
                return None
        result = await self._run_handler(delivery, handler, envelope, body, attempt)
        if attempt.claimed and not attempt.completed:
            lost = await self._completed_together()((attempt.message_id, attempt.claimer))
            if lost is not None:
                raise lost
            attempt.completed = True
        if envelope.reply_to and result is not None:
            await self._reply(envelope, result)
        return _CONSUMED

    async def _claim(self, attempt: Attempt) -> bool:
        """Claim the id, waiting while another live instance holds it; False if done."""
        claim_batch = self._claimed_together()
        pace = Backoff(initial=0.05, cap=1.0)
        while True:
            claim = await claim_batch((attempt.message_id, attempt.claimer))
            if claim.state is ClaimState.CLAIMED:
                attempt.claimed = True
                return True
            if claim.state is ClaimState.DONE:
                return False
            await asyncio.sleep(min(pace.next(), claim.remaining + 0.01))

    def _select(self, envelope: Envelope) -> Handler:
        handlers = self.service.route(envelope.topic)
        if not handlers:
            raise _Refused(DeliveryState.REJECTED, f"no handler for topic {envelope.topic!r}")
        for handler in handlers:
            if handler.accepts_kind(envelope.kind):
                return handler
        kinds = sorted({k for h in handlers for k in (h.kinds or ())})
        raise _Refused(
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
            raise _Refused(DeliveryState.REJECTED, reason) from None

    async def _run_handler(
        self, delivery: Delivery, handler: Handler, envelope: Envelope, body: Any, attempt: Attempt
    ) -> Any:
        deadline = asyncio.timeout(handler.timeout)
        try:
            async with deadline:
                return await handler.func(Context(self, envelope, attempt), body)
        except Retry as exc:
            raise _Refused(DeliveryState.FAILED, exc.reason, exc.delay) from None
        except Reject as exc:
            raise _Refused(DeliveryState.REJECTED, exc.reason) from None
        except TimeoutError as exc:
            # The handler's own deadline, or a timeout inside it (a request unanswered).
            reason = (
                f"handler timed out after {handler.timeout}s"
                if deadline.expired()
                else f"{type(exc).__name__}: {exc}"
            )
            raise _Refused(DeliveryState.FAILED, reason) from None
        except (StoreUnavailable, ClaimLost):
            raise
        except Exception as exc:
            _log.warning(
                "handler %s failed on %s attempt %d: %r",
                handler.func.__name__,
                envelope.id,
                delivery.attempt,
                exc,
            )
            raise _Refused(DeliveryState.FAILED, f"{type(exc).__name__}: {exc}") from None

    async def _renew(self, delivery: Delivery, attempt: Attempt) -> None:
        """Keep the delivery's lease, and the claim's, while the runner works on it."""
        period = self._spec.lease / 3
        while True:
            await asyncio.sleep(period)
            try:
                await delivery.extend(self._spec.lease)
                holding = attempt.claimed and not attempt.completed
                lease = self._spec.lease
                if holding and not await self._claims_store().renew(
                    attempt.message_id, attempt.claimer, lease
                ):
                    _log.warning("the claim on %s was taken over", attempt.message_id)
            except StalwartError as exc:
                _log.warning("lease renewal failed: %s", exc)

    @asynccontextmanager
    async def store_transaction(self, attempt: Attempt) -> AsyncIterator[AsyncConnection]:
        """A store transaction that also completes ``attempt``'s claim (see Context)."""
        claims = self._claims_store()
        completing = False
        async with claims.transaction() as conn:
            yield conn
            if attempt.claimed and not attempt.completed:
                await claims.complete(conn, attempt.message_id, attempt.claimer)
                completing = True
        attempt.completed = attempt.completed or completing

    async def _prune_claims(self) -> None:
        """Forget claims done longer ago than any redelivery can come (hourly)."""
        while True:
            try:
                await self._claims_store().prune(self.settings.store.claims_retention)
            except StalwartError as exc:
                _log.warning("pruning old claims failed (tried again in an hour): %s", exc)
            await asyncio.sleep(_PRUNE_EVERY)

    def _claims_store(self) -> Claims:
        """The store's claims, opened on first use: only an idempotent handler or
        ``ctx.transaction()`` needs them, and with them SQLAlchemy."""
        if self._claims is None:
            from stalwart.service.claims import Claims

            size = self.service.concurrency
            pool = {"pool_size": size, "max_overflow": size}
            self._claims = Claims(self.settings.store.url, self.service.name, pool=pool)
        return self._claims

    def _claimed_together(self) -> GroupCommit[tuple[str, str], Claim]:
        """Claims of concurrent handlers, one transaction per batch."""
        if self._claim_batch is None:
            claims, lease = self._claims_store(), self._spec.lease
            self._claim_batch = GroupCommit(lambda pairs: claims.claim_many(pairs, lease))
        return self._claim_batch

    def _completed_together(self) -> GroupCommit[tuple[str, str], ClaimLost | None]:
        """Completions of concurrent handlers, one transaction per batch."""
        if self._complete_batch is None:
            self._complete_batch = GroupCommit(self._claims_store().complete_many)
        return self._complete_batch

    async def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        """Make the final state durable, then settle: a kill in between loses no state."""
        state, reason = outcome.state, outcome.reason
        if state in (DeliveryState.CONSUMED, DeliveryState.EXPIRED):
            self._store_pace.reset()
            await self._record_final(delivery, state, reason)
            await delivery.ack()
            if state is DeliveryState.CONSUMED:
                self.counters.processed += 1
            return
        if outcome.store_away:
            self.counters.failed += 1
            await self._record_final(delivery, state, reason)
            await asyncio.sleep(self._store_pace.next())
            await delivery.release()
            return
        self.counters.failed += 1
        reason = reason or state.value
        if state is DeliveryState.FAILED and delivery.attempt >= self._spec.max_attempts:
            self._lifecycle.record(self._transition(delivery, DeliveryState.FAILED, reason))
            state, reason = (
                DeliveryState.DEAD,
                f"gave up after {delivery.attempt} attempts: {reason}",
            )
        await self._record_final(delivery, state, reason)
        if state is not DeliveryState.FAILED:
            await delivery.dead(reason)
        elif not await delivery.retry(outcome.delay, reason):  # the queue allows fewer attempts
            dead = f"gave up after {delivery.attempt} attempts: {reason}"
            self._lifecycle.record(self._transition(delivery, DeliveryState.DEAD, dead))

    async def _record_final(
        self, delivery: Delivery, state: DeliveryState, reason: str | None
    ) -> None:
        await self._lifecycle.record_durable(self._transition(delivery, state, reason))

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
        """Publish the reply, again and again while the bus is away: the handler's effect
        is done, and a redelivered request would count as a duplicate that replies
        nothing. Given up once the request has expired: its requester waits no longer."""
        reply = self._envelope(
            request.reply_to or "",
            result,
            None,
            None,
            correlation_id=request.correlation_id or request.id,
            causation_id=request.id,
        )
        give_up = request.expires_at or utcnow() + timedelta(seconds=_REPLY_WITHOUT_TTL)
        pace = Backoff(initial=0.1, cap=2.0)
        while True:
            try:
                await self._transport.publish([reply])
                return
            except BrokerUnavailable as exc:
                wait = pace.next()
                if utcnow() + timedelta(seconds=wait) >= give_up:
                    raise
                _log.warning("reply to %s not sent (%s); again in %.1fs", request.id, exc, wait)
                await asyncio.sleep(wait)

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
                lossless=True,
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
