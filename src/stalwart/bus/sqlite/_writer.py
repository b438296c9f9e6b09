"""Group commit: one thread runs every write of a process in shared transactions.

Callers on the event loop submit small operations; the writer thread takes
everything queued since its last commit, runs it inside one ``BEGIN
IMMEDIATE`` ... ``COMMIT`` and resolves all the callers' futures at once. While
one commit waits for its fsync the next group builds up, so many concurrent
publishes (and acks) cost one disk flush. When an operation of a group fails,
the group is rolled back and its operations are replayed one transaction each,
so one bad operation never takes the others down with it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

from stalwart.backoff import Backoff
from stalwart.bus.sqlite._schema import BUSY_TIMEOUT
from stalwart.errors import BrokerUnavailable, TransportClosed

__all__ = ["GroupWriter", "Op", "Touched"]

_log = logging.getLogger("stalwart.bus.sqlite")

_T = TypeVar("_T")
Touched = set[str]
"""Queues whose claimable rows changed in a transaction: their consumers are woken."""

Op = Callable[[sqlite3.Connection, Touched], _T]

_MAX_GROUP: Final = 4096
_LOCK_DEADLINE: Final = 60.0
_FIRST_RETRY: Final = 0.0002
_MAX_RETRY: Final = 0.004
_BUSY_MS: Final = int(BUSY_TIMEOUT * 1000)
_STOP: Final = object()


class _Pending(Generic[_T]):
    __slots__ = ("durable", "fn", "future")

    def __init__(self, fn: Op[_T], future: asyncio.Future[_T], durable: bool) -> None:
        self.fn = fn
        self.future = future
        self.durable = durable


def _resolve(group: list[_Pending[Any]], results: list[Any]) -> None:
    for item, result in zip(group, results, strict=True):
        if item.future.done():
            continue
        if isinstance(result, BaseException):
            item.future.set_exception(result)
        else:
            item.future.set_result(result)


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class GroupWriter:
    """Owns the process's write connection and the thread that commits groups."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        loop: asyncio.AbstractEventLoop,
        on_commit: Callable[[Touched], None],
        name: str,
        full_sync: bool = True,
    ) -> None:
        self._conn = conn
        self._loop = loop
        self._on_commit = on_commit
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._done: asyncio.Future[None] = loop.create_future()
        self._stopping = False
        self._stop_requested = False
        self._full_sync = full_sync
        self._synced = full_sync  # what PRAGMA synchronous is set to: FULL (True) or NORMAL
        self._carry: _Pending[Any] | None = None
        self.commits = 0
        self.ops = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: Op[_T], durable: bool = True) -> asyncio.Future[_T]:
        """Queue ``fn(conn, touched)`` for the next group; await the result.

        ``durable=False`` (claims, settlements, lease changes) lets the group
        commit without waiting for the disk when nothing in it needs to: a
        power loss can then only undo the operation, which makes the message
        come back (at-least-once), never lose it. Publishes stay durable.
        """
        if self._stop_requested:
            raise TransportClosed("the embedded bus transport is closed; open a new one")
        future: asyncio.Future[_T] = self._loop.create_future()
        self._inbox.put(_Pending(fn, future, durable))
        return future

    async def stop(self, timeout: float = 30.0) -> None:
        """Run what is queued, then end the thread and close the connection."""
        if not self._stop_requested:
            self._stop_requested = True
            self._inbox.put(_STOP)
        try:
            await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except TimeoutError:
            _log.error("writer thread did not stop within %.0f s; abandoning it", timeout)

    # -- writer thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                if self._carry is not None:
                    first, self._carry = self._carry, None
                elif self._stopping:
                    break
                else:
                    first = self._inbox.get()
                if first is _STOP:
                    break
                self._commit_group([first])
        finally:
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                _log.warning("closing the bus connection failed: %s", exc)
            self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def _drain(self, group: list[_Pending[Any]], durable: bool) -> bool:
        """Move what has been queued meanwhile into ``group``; False if nothing was.

        A durable operation never joins a group committing without fsync: it
        waits for the next group instead.
        """
        grew = False
        while len(group) < _MAX_GROUP and not self._stopping and self._carry is None:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._stopping = True
            elif item.durable and not durable and self._full_sync:
                self._carry = item
            else:
                group.append(item)
                grew = True
        return grew

    def _commit_group(self, group: list[_Pending[Any]]) -> None:
        """Commit ``group`` plus whatever arrives while the transaction is open."""
        touched: Touched = set()
        try:
            results = self._transaction(group, touched, grow=True)
        except _LockUnavailable as exc:
            results = [exc.error] * len(group)  # replaying one by one would only wait again
        except Exception as exc:
            if len(group) == 1:
                results = [_translate(exc)]
            else:
                touched = set()
                results = []
                for item in group:
                    try:
                        results.extend(self._transaction([item], touched, grow=False))
                    except Exception as one:
                        results.append(_translate(one))
        self.commits += 1
        self.ops += len(group)
        if touched:
            try:
                self._on_commit(touched)
            except Exception:
                _log.exception("waking consumers after a commit failed")
        try:
            self._loop.call_soon_threadsafe(_resolve, group, results)
        except RuntimeError:
            _log.warning("event loop closed before %d bus operations were answered", len(group))

    def _transaction(self, group: list[_Pending[Any]], touched: Touched, grow: bool) -> list[Any]:
        """Run ``group`` in one transaction; with ``grow``, take in later arrivals too.

        Operations queued while the write lock was awaited or earlier ones ran
        join this transaction, so a busy process commits large groups without
        ever waiting on purpose.
        """
        durable = self._full_sync and any(item.durable for item in group)
        if durable != self._synced:
            self._conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._synced = durable
        self._begin()
        results: list[Any] = []
        try:
            while True:
                while len(results) < len(group):
                    results.append(group[len(results)].fn(self._conn, touched))
                if not grow or not self._drain(group, durable):
                    break
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        return results

    def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, retried with short capped jittered sleeps.

        SQLite's own busy handler sleeps 1, 2, 5, 10 ... ms between tries, which
        leaves the lock idle most of the time when several processes write at
        once; trying again after a fraction of a millisecond keeps it busy.
        The busy timeout only backs statements up inside the transaction.
        """
        deadline = time.monotonic() + _LOCK_DEADLINE
        pace = Backoff(_FIRST_RETRY, _MAX_RETRY, factor=1.5)
        self._conn.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc):
                        raise _LockUnavailable(_translate(exc)) from exc
                    if time.monotonic() > deadline:
                        raise _LockUnavailable(
                            BrokerUnavailable(
                                f"the embedded bus stayed locked for {_LOCK_DEADLINE:.0f} s; "
                                "another process holds a write transaction open (stop it), "
                                "or the disk is stalled"
                            )
                        ) from exc
                    time.sleep(pace.next())
        finally:
            self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")


class _LockUnavailable(Exception):
    """No transaction could start: the whole group fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        return BrokerUnavailable(
            f"the embedded bus could not commit: {exc}; check free disk space and that "
            "the bus file is on a local disk"
        )
    return exc
