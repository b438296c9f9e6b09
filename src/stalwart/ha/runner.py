"""One replica of an HA service: stand by, or be the single active instance.

A replica contends for the lease of its role (``service.<name>`` by default).
Standbys only contend; they do not consume. The active one restores the
latest checkpoint, then runs a :class:`~stalwart.service.ServiceRunner` whose
``ack_guard`` refuses acks once the lease is lost or past its local deadline,
so messages taken by a deposed active go back to the queue for its successor.

Handlers reach their replica through :func:`checkpoint` and :func:`restored_state`
(a context variable set for the runner's tasks), e.g.::

    @svc.handler("counts.add", idempotent=True)
    async def add(ctx: Context, body: dict) -> None:
        state = restored_state() or {"total": 0}
        ...
        await checkpoint(state)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stalwart.bus import Transport, open_bus
from stalwart.config import Settings
from stalwart.envelope import default_sender
from stalwart.errors import FencedOut, StalwartError
from stalwart.events import HaKind, LeaseEvent, LeaseKind
from stalwart.ha.checkpoint import latest_checkpoint, save_checkpoint
from stalwart.ha.config import HaSettings
from stalwart.ha.keeper import LeaseChange, LeaseKeeper
from stalwart.ha.lease import Lease
from stalwart.service import EventPublisher, Service, ServiceRunner
from stalwart.store.engine import make_engine

__all__ = ["HaReplica", "checkpoint", "current_replica", "fenced", "restored_state"]

_log = logging.getLogger("stalwart.ha.runner")
_current: ContextVar[HaReplica | None] = ContextVar("stalwart_ha_replica", default=None)
_WAKE = 1.0


def current_replica() -> HaReplica:
    """The replica whose runner is executing this code (inside a handler)."""
    replica = _current.get()
    if replica is None:
        raise StalwartError(
            "no HA replica here: checkpoint() and restored_state() work in handlers of a "
            "service run with `stalwart run --ha` (or an HaReplica)"
        )
    return replica


async def checkpoint(
    state: Any, *, effect: Callable[[AsyncConnection], Awaitable[Any]] | None = None
) -> int:
    """Save ``state`` as the role's newest checkpoint (FencedOut if no longer active).

    ``effect(conn)`` runs in the same fenced store transaction (see
    :func:`~stalwart.ha.checkpoint.save_checkpoint`).
    """
    return await current_replica().checkpoint(state, effect=effect)


def restored_state() -> Any:
    """The state this replica restored (or last checkpointed); None at first start."""
    return current_replica().state


async def fenced(write: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
    """Run ``write(conn)`` in a store transaction only while this replica is active."""
    return await current_replica().fenced(write)


class HaReplica:
    """One replica of ``service`` under the lease of ``role``.

    ``start()`` then ``stop()`` (or ``run(stop_event)``). ``engine`` and
    ``transport`` are opened from settings unless given (then the caller
    owns them).
    """

    def __init__(
        self,
        service: Service,
        settings: Settings,
        *,
        ha: HaSettings | None = None,
        role: str | None = None,
        engine: AsyncEngine | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.ha = ha or settings.section("ha", HaSettings)
        self.role = role or f"service.{service.name}"
        self._own_engine = engine is None
        self.engine = engine or make_engine(
            self.ha.store_url or settings.store.url, pool_pre_ping=True
        )
        self._own_transport = transport is None
        self._transport = transport
        self.lease = Lease(self.engine, self.role, ttl=self.ha.lease)
        self._keeper = LeaseKeeper(
            self.lease, renew_every=self.ha.renew_interval, poll=self.ha.poll_interval
        )
        self._events = EventPublisher(None, default_sender(service.name, settings.site))
        self._runner: ServiceRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self.state: Any = None
        self.version: int | None = None
        self.active = asyncio.Event()

    @property
    def token(self) -> int | None:
        """The fencing token while active."""
        return self.lease.token

    async def ack_guard(self) -> bool:
        """True only while the lease is held and before its local deadline."""
        return self.lease.held()

    # -- life cycle -------------------------------------------------------

    async def start(self) -> None:
        """Open the bus (for events and, when active, work) and start contending."""
        if self._transport is None:
            self._transport = open_bus(self.settings)
            await self._transport.start()
        self._events = EventPublisher(self._transport, self._events_sender())
        self._keeper.start()
        self._task = asyncio.create_task(self._loop(), name=f"ha-replica-{self.role}")

    def _events_sender(self) -> str:
        return default_sender(self.service.name, self.service.site or self.settings.site)

    async def stop(self) -> None:
        """Graceful stop: finish in-flight work while still holding, then step down."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        token = self._keeper.holding
        await self._stop_runner(self.service.grace)
        await self._keeper.stop(release=True)
        if token is not None:
            await self._emit(HaKind.STEPPED_DOWN, token, detail="replica stopped")
        if self._own_transport and self._transport is not None:
            await self._transport.close()
            self._transport = None
        if self._own_engine:
            await self.engine.dispose()

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve until ``stop`` is set, then stop gracefully."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def step_down(self, hold_off: float | None = None) -> None:
        """Stop acting and release the lease so another replica takes over."""
        token = self._keeper.relinquish()
        if token is None:
            return
        self._keeper.hold_off(self.ha.lease if hold_off is None else hold_off)
        await self._stop_runner(0.0)
        try:
            async with asyncio.timeout(self.ha.lease):
                await self.lease.release(token)
        except (StalwartError, TimeoutError) as exc:
            _log.warning("role=%s release failed, the lease will expire: %s", self.role, exc)
        await self._emit(HaKind.STEPPED_DOWN, token, detail="step-down requested")

    # -- what handlers call ---------------------------------------------------

    async def checkpoint(
        self, state: Any, *, effect: Callable[[AsyncConnection], Awaitable[Any]] | None = None
    ) -> int:
        """Save ``state`` fenced by the current token; FencedOut if not active."""
        token = self.lease.token
        try:
            if token is None:
                raise FencedOut(
                    f"replica {self.lease.holder} is not active for role {self.role!r}; "
                    "its checkpoint is refused, the active replica owns the state"
                )
            version = await save_checkpoint(
                self.engine,
                self.role,
                token,
                state,
                holder=self.lease.holder,
                keep=self.ha.checkpoint_keep,
                effect=effect,
            )
        except FencedOut as exc:
            await self._fenced(token, str(exc))
            raise
        self.state, self.version = state, version
        return version

    async def fenced(self, write: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
        """:meth:`Lease.fenced` that also steps down when refused."""
        try:
            return await self.lease.fenced(write)
        except FencedOut as exc:
            await self._fenced(self.lease.token, str(exc))
            raise

    async def _fenced(self, token: int | None, detail: str) -> None:
        self.lease.forget()  # acks stop now; the keeper reports the loss on its next wake
        await self._emit(HaKind.FENCED, token, detail=detail)

    # -- internals --------------------------------------------------------

    async def _emit(
        self,
        event: LeaseKind,
        token: int | None,
        *,
        version: int | None = None,
        detail: str = "",
    ) -> None:
        body = LeaseEvent(
            event=event,
            role=self.role,
            holder=self.lease.holder,
            token=token,
            version=version,
            detail=detail,
        )
        _log.info("role=%s event=%s token=%s %s", self.role, event.value, token, detail)
        await self._events.publish(body)

    async def _loop(self) -> None:
        _current.set(self)
        while True:
            change = await self._keeper.next_change(_WAKE)
            if change is None:
                continue
            if change.kind == "acquired":
                await self._activate(change)
            else:
                await self._deactivate(change)

    async def _activate(self, change: LeaseChange) -> None:
        await self._emit(HaKind.ACQUIRED, change.token)
        try:
            saved = await latest_checkpoint(self.engine, self.role)
            self.state = saved.state if saved else None
            self.version = saved.version if saved else None
            if saved is not None:
                await self._emit(
                    HaKind.RESTORED,
                    change.token,
                    version=saved.version,
                    detail=f"checkpoint written under token {saved.token}",
                )
            if self._transport is None:
                raise StalwartError("replica is not started; call start() first")
            runner = ServiceRunner(
                self.service, self._transport, self.settings, ack_guard=self.ack_guard
            )
            self._runner = runner  # set first: a failed start is still stopped cleanly
            await runner.start()
        except Exception as exc:  # whatever stops activation, hand the role on
            _log.error("role=%s could not become active, stepping down: %r", self.role, exc)
            await self.step_down()
            return
        self.active.set()
        _log.info("role=%s active token=%d version=%s", self.role, change.token, self.version)

    async def _deactivate(self, change: LeaseChange) -> None:
        self.active.clear()
        await self._stop_runner(min(1.0, self.ha.lease / 2))
        released = False
        with contextlib.suppress(StalwartError, TimeoutError):
            async with asyncio.timeout(self.ha.lease):
                released = await self.lease.release(change.token)
        if released:
            self._keeper.hold_off(self.ha.lease)
            await self._emit(HaKind.STEPPED_DOWN, change.token, detail=change.reason)
        else:
            await self._emit(HaKind.LOST, change.token, detail=change.reason)

    async def _stop_runner(self, grace: float) -> None:
        self.active.clear()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.stop(grace=grace)
