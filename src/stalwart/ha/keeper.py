"""Keep contending for a lease, renew it while held, and report every change.

The keeper owns one background task. It never runs user callbacks inline
(a slow callback must not delay a renewal); changes go onto a queue that the
owner (e.g. :class:`~stalwart.ha.runner.HaReplica`) reads with :meth:`next_change`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Literal

from stalwart.backoff import jittered
from stalwart.errors import StoreUnavailable
from stalwart.ha.lease import Lease

__all__ = ["LeaseChange", "LeaseKeeper"]

_log = logging.getLogger("stalwart.ha.lease")
_BACKOFF_CAP = 5.0


@dataclass(frozen=True, slots=True)
class LeaseChange:
    """``acquired`` with the new token, or ``lost`` with the token that was held."""

    kind: Literal["acquired", "lost"]
    token: int
    reason: str = ""


class LeaseKeeper:
    """Contends every ``poll`` seconds while standing by; renews every ``renew_every``."""

    def __init__(self, lease: Lease, *, renew_every: float, poll: float) -> None:
        if renew_every >= lease.ttl / 2:
            raise ValueError("renew_every must be under half the lease time")
        self.lease = lease
        self._renew_every = renew_every
        self._poll = poll
        self._changes: asyncio.Queue[LeaseChange] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._holding: int | None = None
        self._not_before = 0.0

    def hold_off(self, seconds: float) -> None:
        """Do not contend for ``seconds`` (lets another replica take over after a step-down)."""
        self._not_before = asyncio.get_running_loop().time() + seconds

    def start(self) -> None:
        """Start the background task (idempotent)."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._loop(), name=f"ha-lease-{self.lease.role}")

    async def stop(self, *, release: bool = True) -> None:
        """Stop contending and renewing; with ``release``, step down from a held lease.

        Call it only once the work guarded by the lease has stopped.
        """
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        token, self._holding = self._holding, None
        if release and token is not None:
            try:
                async with asyncio.timeout(max(self.lease.ttl, 1.0)):
                    await self.lease.release(token)
            except (StoreUnavailable, TimeoutError) as exc:
                _log.warning("role=%s release failed (it will expire): %s", self.lease.role, exc)
        self.lease.forget()

    @property
    def holding(self) -> int | None:
        """The token this keeper holds (None while standing by)."""
        return self._holding

    def relinquish(self) -> int | None:
        """Stop holding without reporting a loss (the owner is stepping down itself)."""
        token, self._holding = self._holding, None
        self.lease.forget()
        return token

    async def next_change(self, timeout: float) -> LeaseChange | None:
        """The next change, or None after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return await self._changes.get()
        except TimeoutError:
            return None

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.0)):
                await self._stop.wait()

    def _backoff(self) -> float:
        self._failures += 1
        # Capped near the lease so a standby retries soon after a transient error.
        cap = min(_BACKOFF_CAP, max(self._poll, self.lease.ttl / 2))
        return jittered(self._failures, 2 * self._poll, cap)

    async def _loop(self) -> None:
        while not self._stop.is_set():
            if self._holding is None:
                await self._contend()
            else:
                await self._hold(self._holding)

    async def _contend(self) -> None:
        wait = self._not_before - asyncio.get_running_loop().time()
        if wait > 0:
            await self._pause(wait)
            return
        try:
            async with asyncio.timeout(max(self.lease.ttl, 1.0)):
                acquired = await self.lease.acquire()
        except (StoreUnavailable, TimeoutError) as exc:
            self.lease.forget()  # an outcome we never saw must not count as holding
            _log.warning("role=%s acquire failed: %s", self.lease.role, exc)
            await self._pause(self._backoff())
            return
        self._failures = 0
        token = self.lease.token
        if acquired and token is not None:
            _log.info(
                "role=%s acquired token=%d holder=%s", self.lease.role, token, self.lease.holder
            )
            self._holding = token
            self._changes.put_nowait(LeaseChange("acquired", token))
            return
        await self._pause(self._poll * random.uniform(0.8, 1.2))

    async def _hold(self, token: int) -> None:
        # Wake for the next renewal, or at the deadline if that comes first.
        await self._pause(min(self._renew_every, self.lease.remaining()))
        if self._stop.is_set():
            return
        reason = ""
        try:
            remaining = self.lease.remaining()
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                if not await self.lease.renew():
                    reason = "lease taken, expired or step-down requested"
        except TimeoutError:
            reason = "no renewal before the local deadline"
        except StoreUnavailable as exc:
            if self.lease.held():
                _log.warning("role=%s renewal failed, retrying: %s", self.lease.role, exc)
                await self._pause(min(self._renew_every / 2, self.lease.remaining()))
                return
            reason = f"store unreachable until the deadline: {exc}"
        if self._holding != token:
            return  # relinquished by the owner meanwhile
        if reason or not self.lease.held():
            self.lease.forget()
            self._holding = None
            reason = reason or "local deadline passed"
            _log.warning("role=%s lost token=%d: %s", self.lease.role, token, reason)
            self._changes.put_nowait(LeaseChange("lost", token, reason))
