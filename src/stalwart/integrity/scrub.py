"""Scrubbing: re-verify every replica of a site, repair what can be, report the rest.

A run walks the site's replicas in name order and persists its cursor after
each one, so an interrupted run resumes where it stopped; it then goes back
over the replicas it had checked before it stopped, and checks again those
that changed on disk since (see :func:`_changed_since_checked`). Reads are
rate-limited by a token bucket. A damaged replica is repaired from its
parity, then block by block from a good replica at another site, then by a
verified copy of that replica; a replica file that vanished is *missing*;
a file under the site root that the catalog does not know is *dark*.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Final

from stalwart.errors import IntegrityError
from stalwart.events import IntegrityEvent, IntegrityKind
from stalwart.integrity._pass import Progress
from stalwart.integrity.catalog import GOOD_STATES, Catalog, Row, ScrubCounts
from stalwart.integrity.channels import Channel
from stalwart.integrity.ops import Recorder, transfer, verify
from stalwart.integrity.repair import Fetch
from stalwart.integrity.transfer import TransferFailed, TransferOptions
from stalwart.integrity.walk import data_files

__all__ = ["ScrubOptions", "ScrubReport", "TokenBucket", "scrub_forever", "scrub_site"]

_log = logging.getLogger("stalwart.integrity.scrub")

# File times come from a coarse kernel clock (a tick behind): a change this close
# before a replica's verification counts as after it.
_CLOCK_SLACK: Final = 0.02


class TokenBucket:
    """Limit a byte rate: ``take(n)`` sleeps until ``n`` bytes are allowed.

    Thread-safe; called from the worker threads that read. ``rate`` None or
    0 means unlimited. The burst is one second's worth.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.rate = rate or 0.0
        self._clock = clock
        # Waits end early on interrupt(): a slow rate must not keep a stopped scrub.
        self._interrupted = threading.Event()
        self._sleep = sleep or self._interrupted.wait
        self._tokens = self.rate
        self._stamp = clock()
        self._lock = threading.Lock()

    def interrupt(self) -> None:
        """End any wait now, and wait no more (the run is stopping)."""
        self._interrupted.set()

    def take(self, n: int) -> None:
        if self.rate <= 0 or n <= 0 or self._interrupted.is_set():
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)

    def wrap(self, progress: Progress | None) -> Progress:
        def step(n: int) -> None:
            self.take(n)
            if progress is not None:
                progress(n)

        return step


@dataclass
class ScrubOptions:
    """What to scrub and how."""

    site: str
    root: Path | None = None
    rate: float | None = None
    store: Path | None = None
    repair: bool = True
    batch: int = 200
    transfer: TransferOptions | None = None
    home: Path | None = None  # stalwart's own files, never dark


@dataclass
class ScrubReport:
    """The outcome of one run (also in ``integrity_scrubs``)."""

    run_id: int
    counts: ScrubCounts
    resumed: bool = False
    interrupted: bool = False
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # found missing (restored or not)
    restored: list[str] = field(default_factory=list)  # found missing, then restored
    dark: list[str] = field(default_factory=list)

    @property
    def still_broken(self) -> list[str]:
        """Replicas that stay corrupt or missing after the run."""
        return self.corrupt + [p for p in self.missing if p not in self.restored]


def _range_fetch(url: str) -> Fetch:
    channel = Channel(url)

    def fetch(offset: int, length: int) -> bytes | None:
        try:
            return channel.read_range(offset, length)
        except OSError as exc:
            _log.warning("ranged read from replica failed url=%s error=%s", url, exc)
            return None

    return fetch


class _Run:
    def __init__(
        self, catalog: Catalog, recorder: Recorder, opts: ScrubOptions, progress: Progress | None
    ) -> None:
        self.catalog = catalog
        self.recorder = recorder
        self.opts = opts
        self.bucket = TokenBucket(opts.rate)
        self.progress = self.bucket.wrap(progress)

    async def _other_good(self, name: str) -> Row | None:
        for row in await self.catalog.replicas(None, name=name):
            if row["site"] != self.opts.site and row["state"] in GOOD_STATES:
                return row
        return None

    async def one(self, row: Row, report: ScrubReport) -> None:
        """Check (and repair) one listed replica.

        A replica no longer catalogued when its outcome is recorded was removed
        on purpose meanwhile (retention): it is not counted, and not restored.
        """
        path, name = Path(row["path"]), str(row["name"])
        other = await self._other_good(name)
        if await asyncio.to_thread(path.is_file):
            checked = await verify(
                path,
                self.recorder,
                name=name,
                store=self.opts.store,
                repair=self.opts.repair,
                fetch=_range_fetch(other["path"]) if other else None,
                source=other["path"] if other else None,
                progress=self.progress,
                reread=self.progress,
            )
            report.counts.bytes_read += checked.bytes_read
            if self.recorder.catalog is not None and not checked.catalogued:
                return
            state = checked.state
        else:
            state = "missing"
            if not await self.catalog.set_replica(
                name, self.opts.site, str(path), "missing", create=False
            ):
                return
            report.counts.missing += 1
            report.missing.append(str(path))
            await self.recorder.emit(
                IntegrityEvent(
                    event=IntegrityKind.MISSING,
                    site=self.opts.site,
                    name=name,
                    path=str(path),
                    detail="catalogued replica not on disk",
                )
            )
        if state in ("corrupt", "missing") and self.opts.repair and other is not None:
            found = state
            state = await self._from_replica(name, other, path, state, report)
            if found == "missing" and state == "repaired":
                report.restored.append(str(path))
        report.counts.checked += 1
        if state == "ok":
            report.counts.ok += 1
        elif state == "repaired":
            report.counts.repaired += 1
        elif state == "corrupt":
            report.counts.corrupt += 1
            report.corrupt.append(str(path))

    async def _from_replica(
        self, name: str, other: Row, path: Path, state: str, report: ScrubReport
    ) -> str:
        """Copy the good replica over ``path``; its bytes are paced and counted as read."""
        streamed = 0

        def paced(n: int) -> None:
            nonlocal streamed
            streamed += n
            self.progress(n)

        try:
            result = await transfer(
                other["path"], str(path), self.recorder, self.opts.transfer, progress=paced
            )
        except IntegrityError as exc:  # the other replica is gone or bad too: go on
            _log.warning("repair from replica failed name=%s error=%s", name, exc)
            if isinstance(exc, TransferFailed):
                report.counts.bytes_read += exc.result.bytes_moved
            return state
        self.progress(max(result.bytes_moved - streamed, 0))  # its parity and manifest
        report.counts.bytes_read += result.bytes_moved
        await self.catalog.record_repair(
            path=str(path),
            method="replica",
            blocks=[],
            nbytes=result.bytes_moved,
            name=name,
            site=self.opts.site,
            source=other["path"],
        )
        return "repaired"

    async def dark(self, report: ScrubReport) -> None:
        root = self.opts.root
        if root is None:
            return
        known = {r["path"] for r in await self.catalog.replicas(self.opts.site, limit=10**9)}
        found = await asyncio.to_thread(_walk, root, self.opts.home)
        report.dark = sorted(p for p in found if p not in known)
        report.counts.dark = len(report.dark)
        for path in report.dark:
            await self.recorder.emit(
                IntegrityEvent(
                    event=IntegrityKind.DARK,
                    site=self.opts.site,
                    path=path,
                    detail="on disk under the site root but not in the catalog",
                )
            )


def _changed_since_checked(row: Row) -> bool:
    """Whether a replica that a resumed run checked before it stopped must be checked
    again: it is not catalogued good, or its file is gone, has another size, or
    changed (``st_ctime``, which every write, truncation or rename sets) since it
    was verified.

    Without this a resumed run vouched for replicas it had checked before its
    interruption, whatever happened to them meanwhile: in the chaos campaign
    (seed 8, fault 712) a heal's scrub failed at na, the next fault truncated the
    replica at its cursor (the newest good one: the scrub had just verified it),
    and the next heal resumed after the cursor and reported na clean. A file
    changed in place is caught by the next full run, as any damage after a check.
    """
    verified = row["verified_at"]
    if row["state"] not in GOOD_STATES or verified is None:
        return True
    try:
        st = os.stat(row["path"])
    except OSError:
        return True
    if row["size"] is not None and st.st_size != row["size"]:
        return True
    if verified.tzinfo is None:  # SQLite keeps UTC without its zone
        verified = verified.replace(tzinfo=UTC)
    return bool(st.st_ctime > verified.timestamp() - _CLOCK_SLACK)


def _walk(root: Path, home: Path | None) -> list[str]:
    return [str(p) for p in data_files(root, home)]


async def _head(catalog: Catalog, options: ScrubOptions, through: str) -> AsyncIterator[Row]:
    """The site's replicas named up to ``through``, in name order, a batch at a time."""
    after: str | None = None
    while rows := await catalog.replicas(
        options.site, after=after, through=through, limit=options.batch
    ):
        for row in rows:
            yield row
        after = str(rows[-1]["name"])


async def _interrupt_on(stop: asyncio.Event, bucket: TokenBucket) -> None:
    await stop.wait()
    bucket.interrupt()


async def scrub_site(
    catalog: Catalog,
    recorder: Recorder,
    options: ScrubOptions,
    *,
    progress: Progress | None = None,
    on_file: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> ScrubReport:
    """One scrub run of ``options.site`` (resuming an unfinished one); see the module doc.

    A resumed run's counts include the checks made before its interruption, and
    those of the replicas it checks again (``checked`` may exceed the replicas).

    Setting ``stop`` ends the run after the current file, as *interrupted*.
    """
    run = _Run(catalog, recorder, options, progress)
    run_id, cursor, counts = await catalog.scrub_begin(options.site)
    resumed_at = cursor
    report = ScrubReport(run_id, counts, resumed=cursor is not None)
    watcher = asyncio.create_task(_interrupt_on(stop, run.bucket)) if stop else None
    try:
        while True:
            rows = await catalog.replicas(options.site, after=cursor, limit=options.batch)
            if not rows:
                break
            for row in rows:
                if stop is not None and stop.is_set():
                    report.interrupted = True
                    await catalog.scrub_progress(run_id, cursor, counts, "interrupted")
                    return report
                await run.one(row, report)
                cursor = str(row["name"])
                await catalog.scrub_progress(run_id, cursor, counts)
                if on_file is not None:
                    on_file(cursor)
        if resumed_at is not None:  # back over what was checked before the interruption
            async for row in _head(catalog, options, resumed_at):
                if stop is not None and stop.is_set():
                    report.interrupted = True
                    await catalog.scrub_progress(run_id, cursor, counts, "interrupted")
                    return report
                if not await asyncio.to_thread(_changed_since_checked, row):
                    continue
                await run.one(row, report)
                await catalog.scrub_progress(run_id, cursor, counts)
                if on_file is not None:
                    on_file(str(row["name"]))
        await run.dark(report)
    except BaseException:
        await asyncio.shield(catalog.scrub_progress(run_id, cursor, counts, "interrupted"))
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
    await catalog.scrub_progress(run_id, cursor, counts, "done")
    await recorder.emit(
        IntegrityEvent(
            event=IntegrityKind.SCRUBBED,
            site=options.site,
            bytes_moved=0,
            detail=(
                f"checked={counts.checked} ok={counts.ok} repaired={counts.repaired} "
                f"corrupt={counts.corrupt} missing={counts.missing} dark={counts.dark} "
                f"bytes_read={counts.bytes_read}"
            ),
        )
    )
    return report


async def scrub_forever(
    catalog: Catalog,
    recorder: Recorder,
    options: ScrubOptions,
    *,
    every: float,
    spread: float = 0.1,
    stop: asyncio.Event,
    on_report: Callable[[ScrubReport], None] | None = None,
    on_next: Callable[[float], None] | None = None,
    progress: Progress | None = None,
) -> None:
    """Scrub now, then every ``every`` seconds +/- ``spread`` (a fraction), until ``stop``.

    The random spread keeps sites that share storage from scrubbing in step.
    ``on_next`` is told the seconds until the next run, before each wait.
    """
    while not stop.is_set():
        report = await scrub_site(catalog, recorder, options, stop=stop, progress=progress)
        if on_report is not None:
            on_report(report)
        delay = max(every * (1 + random.uniform(-spread, spread)), 0.0)
        if on_next is not None and not stop.is_set():
            on_next(delay)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            continue
