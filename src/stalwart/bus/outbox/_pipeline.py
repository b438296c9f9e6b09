"""The outbox's drain pipeline: spool reads, publishes and removals overlapped.

Draining one batch at a time (read, publish, wait for the confirms, delete
with an fsync) leaves the broker idle while the spool works and the spool
idle while the broker confirms, and it waits a round trip between batches,
which a publisher of its own does not. So a :class:`Pipeline` reads the
spool ahead in large slices, sends batches while the confirms of up to
``window`` earlier ones are awaited (in order, through
:class:`~stalwart.bus._transport.Pipelined` where the transport has it) and
deletes confirmed rows in the background, as many as confirmed meanwhile in
one transaction. A row leaves the spool only after the broker confirmed it
and every row before it; after a failure the rows not yet confirmed are sent
again (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from stalwart.bus._transport import EncodedMessage
from stalwart.bus.outbox._spool import Spool, SpooledRow

__all__ = ["Pipeline"]

log = logging.getLogger("stalwart.bus.outbox")

Send = Callable[[Sequence[EncodedMessage]], Awaitable[asyncio.Future[None]]]


class _Flight(NamedTuple):
    """A batch sent, its spool rows up to ``last``, awaiting ``confirms``."""

    last: int
    messages: int
    confirms: asyncio.Future[None]


class _Removal(NamedTuple):
    last: int
    done: asyncio.Future[None]


class Pipeline:
    """The forwarding state of one outbox on one spool; used by one task at a time.

    ``send`` puts a batch on the wire and returns a future of its confirms;
    ``read`` rows are read per spool query.
    """

    def __init__(self, spool: Spool, send: Send, *, window: int, read: int) -> None:
        self._spool = spool
        self._send = send
        self._window = window
        self._read = read
        self.confirmed = 0  # messages the broker confirmed, in all
        self._sent = 0  # spool seq of the last row sent: reads go on after it
        self._confirmed = 0  # ... of the last row confirmed, with every row before it
        self._ahead: asyncio.Future[list[SpooledRow]] | None = None
        self._in_flight: deque[_Flight] = deque()
        self._removable: int | None = None  # confirmed up to here, removal not started
        self._removal: _Removal | None = None

    async def rows(self) -> list[SpooledRow]:
        """The next rows after those sent (read ahead while they are sent)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            rows = await ahead
        else:
            rows = await asyncio.to_thread(self._spool.head, self._read, self._sent)
        if rows:
            self._ahead = asyncio.ensure_future(
                asyncio.to_thread(self._spool.head, self._read, rows[-1].seq)
            )
        return rows

    async def send(self, rows: Sequence[SpooledRow], batch: Sequence[EncodedMessage]) -> None:
        """Send ``batch`` (spool ``rows``, consecutive); returns once at most ``window``
        batches await their confirms."""
        confirms = await self._send(batch)
        self._in_flight.append(_Flight(rows[-1].seq, len(batch), confirms))
        self._sent = rows[-1].seq
        while len(self._in_flight) > self._window:
            await self._confirm_oldest()

    async def settle(self) -> int:
        """Wait for every confirm in flight and remove the confirmed rows; how many
        messages were confirmed."""
        confirmed = 0
        while self._in_flight:
            confirmed += await self._confirm_oldest()
        await self.removed()
        return confirmed

    async def removed(self) -> None:
        """Finish removing every confirmed row (a removal that fails is logged: its
        rows stay and are forwarded again)."""
        if self._removal is not None:
            await asyncio.wait([self._removal.done])
        self._start_removal()
        if self._removal is not None:
            await asyncio.wait([self._removal.done])
            self._check_removal()

    def restart(self) -> None:
        """Read from the start of the spool next (rows found empty, or another process
        forwarded); call when nothing is in flight."""
        self.abandon()
        self._sent = self._confirmed = 0
        self._removable = None  # rows whose removal failed: they are read and sent again

    def abandon(self) -> None:
        """Forget what is in flight and read ahead (after a failure, or when stopped):
        the rows not yet confirmed are read and sent again."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
        while self._in_flight:
            confirms = self._in_flight.popleft().confirms
            if confirms.done() and not confirms.cancelled():
                confirms.exception()  # retrieved: the batch goes again anyway
            confirms.cancel()
        self._sent = self._confirmed

    async def _confirm_oldest(self) -> int:
        flight = self._in_flight[0]
        await flight.confirms
        self._in_flight.popleft()
        self._confirmed = flight.last
        self._removable = flight.last
        self._start_removal()
        self.confirmed += flight.messages
        return flight.messages

    def _start_removal(self) -> None:
        """Delete the confirmed rows, unless a removal runs: those confirmed meanwhile go
        with the next, in one transaction."""
        if self._removal is not None:
            if not self._removal.done.done():
                return
            self._check_removal()
        if self._removable is None:
            return
        last, self._removable = self._removable, None
        done = asyncio.ensure_future(asyncio.to_thread(self._spool.mark_forwarded, last))
        self._removal = _Removal(last, done)

    def _check_removal(self) -> None:
        """Take the finished removal; if it failed, its rows are removed with the next."""
        removal, self._removal = self._removal, None
        if removal is None or removal.done.cancelled():
            return
        exc = removal.done.exception()
        if exc is not None:
            log.error("outbox: removing forwarded rows from %s failed: %s", self._spool.path, exc)
            self._removable = max(removal.last, self._removable or 0)
