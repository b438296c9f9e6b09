"""The invariants a campaign must keep, checked against the store and the catalog.

Each check returns :class:`Violation` s; none means the invariant held:

- ``final-state``: every delivery of every message ended (consumed, dead,
  expired or rejected), none left sent, received or failed-and-waiting.
- ``no-duplicate-effect``: no service with idempotent handlers ran one to
  completion twice for one message (a redelivery the runtime recognised as already processed,
  ``consumed`` with reason ``duplicate: ...``, does not count), and no unit
  was delivered more often than it was made ready.
- ``replicas-byte-exact``: every replica in the integrity catalog is marked
  good and its bytes match its manifest, block by block, at its full size.
- ``units-on-time``: every unit made ready was delivered within the deadline.
- ``faults-recorded``: every injected fault was in the store (``sys.chaos.injected``)
  within 2 s of its injection.
- ``kills-detected``: every program killed (SIGKILL) has the watchdog's
  ``exited`` event for it, timed within 2 s of the kill (which follows the fault's
  record in the store: the window runs to 2 s after that record was stored). A kill
  that lands while the watchdog is already stopping that program (a halt after
  missed heartbeats, its SIGTERM grace) ends a run the watchdog is ending: its
  ``halted`` or ``stopped`` record, in the same window, counts instead. The 2 s are
  of a watchdog able to watch: one frozen meanwhile (``stop watchdog``) has 2 s
  from its SIGCONT; one killed meanwhile (``kill watchdog``) owes no record.
- ``restarts-accounted``: every restart by the watchdog follows a fault that
  explains it (that program killed, stopped, leaking, slowed; its site's link
  cut; the broker lost or cut off; the store restarted; the watchdog itself
  killed), within
  ``grace`` seconds of that fault's heal.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.chaos.events import CHAOS_PREFIX
from stalwart.chaos.journal import Entry
from stalwart.chaos.schedule import FaultKind
from stalwart.envelope import TERMINAL_STATES, utcnow
from stalwart.integrity import Catalog, verify_file
from stalwart.integrity.catalog import GOOD_STATES, RETIRING
from stalwart.store.schema import deliveries, messages, transitions

__all__ = ["INVARIANTS", "Checker", "Limits", "Violation", "count_by", "watchdog_events"]

INVARIANTS: Final = (
    "final-state",
    "no-duplicate-effect",
    "replicas-byte-exact",
    "units-on-time",
    "faults-recorded",
    "kills-detected",
    "restarts-accounted",
)
_DELIVERED: Final = "Delivered"
_SEEN: Final = "duplicate:"  # the reason of a consumed redelivery whose handler did not run
# The watchdog's records of a run's end: it died (exited), or the watchdog stopped it
# (halted after a failed probe, stopped on request); a kill lands in one of them.
_RUN_ENDS: Final = frozenset({"exited", "halted", "stopped"})


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str


@dataclass(frozen=True)
class Limits:
    """How long things may take before they count as broken."""

    unit_deadline: float = 120.0  # seconds from ready to delivered
    record_within: float = 2.0  # seconds from injection to its event in the store
    restart_grace: float = 60.0  # seconds after a heal that a restart is still explained


async def watchdog_events(engine: AsyncEngine, since: datetime) -> list[dict[str, Any]]:
    """The watchdog's events since ``since``: ``event``, ``program``, ``at``, oldest first."""
    query = (
        select(messages.c.topic, messages.c.body, messages.c.created_at)
        .where(messages.c.topic.like("sys.watchdog.%"), messages.c.created_at >= since)
        .order_by(messages.c.created_at)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "event": r.topic.rsplit(".", 1)[1],
            "program": (r.body or {}).get("program"),
            "at": r.created_at,
        }
        for r in rows
    ]


class Checker:
    """Reads the store of one campaign started at ``since``."""

    def __init__(
        self,
        engine: AsyncEngine,
        since: datetime,
        limits: Limits = Limits(),
        once: Collection[str] | None = None,
    ) -> None:
        self.engine = engine
        self.since = since
        self.limits = limits
        # Services whose handlers are idempotent (None: every service): only they promise
        # one run per message; the others are at-least-once by design.
        self.once = once

    async def check(self, journal: Sequence[Entry]) -> list[Violation]:
        """Every invariant, after the run."""
        found = [
            *await self.final_states(),
            *await self.duplicate_effects(),
            *await self.replicas_exact(),
            *await self.units_on_time(),
            *await self.faults_recorded(journal),
            *await self.kills_detected(journal),
            *await self.restarts_accounted(journal),
        ]
        return found

    async def final_states(self) -> list[Violation]:
        query = (
            select(deliveries.c.message_id, deliveries.c.service, deliveries.c.state)
            .where(deliveries.c.state.not_in([s.value for s in TERMINAL_STATES]))
            .order_by(deliveries.c.last_at)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Violation("final-state", f"{r.message_id} at {r.service} is still {r.state}")
            for r in rows
        ]

    async def duplicate_effects(self) -> list[Violation]:
        twice = (
            select(transitions.c.message_id, transitions.c.service, func.count().label("n"))
            .where(transitions.c.state == "consumed")
            # A redelivery the runtime recognised (its claim was done) ran no handler.
            .where(or_(transitions.c.reason.is_(None), ~transitions.c.reason.startswith(_SEEN)))
            .where(true() if self.once is None else transitions.c.service.in_(self.once))
            .group_by(transitions.c.message_id, transitions.c.service)
            .having(func.count() > 1)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(twice)).all()
        found = [
            Violation("no-duplicate-effect", f"{r.message_id} consumed {r.n} times by {r.service}")
            for r in rows
        ]
        ready, delivered = await self.units()
        for ous, times in delivered.items():
            made = len(ready.get(ous, ()))
            if len(times) > made:
                found.append(
                    Violation(
                        "no-duplicate-effect",
                        f"{ous} delivered {len(times)} times, made ready {made} times",
                    )
                )
        return found

    async def units(self) -> tuple[dict[str, list[datetime]], dict[str, list[datetime]]]:
        """When each unit was made ready, and when it was delivered, by unit."""
        query = select(messages.c.topic, messages.c.body, messages.c.created_at).where(
            messages.c.topic.in_(("ous.ready", "ous.state"))
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        ready: dict[str, list[datetime]] = {}
        delivered: dict[str, list[datetime]] = {}
        for r in rows:
            body = r.body or {}
            if r.topic == "ous.ready":
                ready.setdefault(body["ous"], []).append(r.created_at)
            elif body.get("state") == _DELIVERED:
                delivered.setdefault(body["ous"], []).append(r.created_at)
        return ready, delivered

    async def units_on_time(self, now: datetime | None = None) -> list[Violation]:
        deadline = timedelta(seconds=self.limits.unit_deadline)
        now = now or utcnow()
        ready, delivered = await self.units()
        found = []
        for ous, times in sorted(ready.items()):
            first = min(times)
            done = min(delivered.get(ous, ()), default=None)
            if done is None and now - first > deadline:
                found.append(Violation("units-on-time", f"{ous} not delivered after {now - first}"))
            elif done is not None and done - first > deadline:
                found.append(Violation("units-on-time", f"{ous} delivered after {done - first}"))
        return found

    async def replicas_exact(self) -> list[Violation]:
        found = []
        for r in await Catalog(self.engine).sized_replicas():
            if r["state"] == RETIRING:  # being deleted on purpose by the demo's retention
                continue
            problem = await asyncio.to_thread(_replica_problem, Path(r["path"]), r["size"])
            if r["state"] not in GOOD_STATES:
                problem = problem or f"catalogued as {r['state']}"
            if problem:
                where = f"{r['name']} at {r['site']}"
                found.append(Violation("replicas-byte-exact", f"{where}: {problem}"))
        return found

    async def faults_recorded(self, journal: Sequence[Entry]) -> list[Violation]:
        query = select(messages.c.body, messages.c.stored_at).where(
            messages.c.topic == f"{CHAOS_PREFIX}.injected", messages.c.created_at >= self.since
        )
        async with self.engine.connect() as conn:
            stored = {(r.body or {}).get("index"): r.stored_at for r in (await conn.execute(query))}
        within = timedelta(seconds=self.limits.record_within)
        found = []
        for entry in journal:
            if entry.injected_at is None:
                continue
            at = stored.get(entry.index)
            label = f"fault {entry.index} ({entry.planned.label()})"
            if at is None:
                found.append(Violation("faults-recorded", f"{label} is not in the store"))
            elif at - entry.injected_at > within:
                late = (at - entry.injected_at).total_seconds()
                found.append(Violation("faults-recorded", f"{label} stored {late:.1f}s late"))
        return found

    async def kills_detected(self, journal: Sequence[Entry]) -> list[Violation]:
        within = timedelta(seconds=self.limits.record_within)
        ends: dict[str, list[datetime]] = {}  # by program: its runs' ends the watchdog saw
        for event in await watchdog_events(self.engine, self.since):
            if event["event"] in _RUN_ENDS:
                ends.setdefault(str(event["program"]), []).append(event["at"])
        recorded = await self._injections_stored()
        blind = sorted(
            (e for e in journal if e.planned.target == "watchdog" and e.injected_at is not None),
            key=lambda e: e.injected_at or self.since,
        )
        found = []
        for entry in journal:
            killed = entry.planned.kind is FaultKind.KILL and entry.planned.target != "watchdog"
            if not killed or entry.injected_at is None or entry.restarts is None:
                continue
            start = entry.injected_at
            # The kill strikes once its record is stored (the campaign writes it first).
            struck = max(start, recorded.get(entry.index) or start)
            due = _due(start, struck + within, within, blind)
            if due is None:
                continue
            if not any(start <= at <= due for at in ends.get(entry.restarts, ())):
                found.append(
                    Violation(
                        "kills-detected",
                        f"fault {entry.index} ({entry.planned.label()}): no `exited` "
                        f"(nor `halted`, `stopped`) event for {entry.restarts} within "
                        f"{within.total_seconds():.0f}s",
                    )
                )
        return found

    async def _injections_stored(self) -> dict[int, datetime]:
        """When each fault's ``injected`` record was stored, by fault index."""
        query = select(messages.c.body, messages.c.stored_at).where(
            messages.c.topic == f"{CHAOS_PREFIX}.injected", messages.c.created_at >= self.since
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {
            int(index): r.stored_at
            for r in rows
            if isinstance(index := (r.body or {}).get("index"), int)
        }

    async def restarts_accounted(self, journal: Sequence[Entry]) -> list[Violation]:
        grace = timedelta(seconds=self.limits.restart_grace)
        found = []
        for event in await watchdog_events(self.engine, self.since):
            if event["event"] != "restarted":
                continue
            if not any(_explains(entry, event, grace) for entry in journal):
                found.append(
                    Violation(
                        "restarts-accounted",
                        f"{event['program']} restarted at {event['at']:%H:%M:%S} with no fault "
                        "to explain it",
                    )
                )
        return found


def _due(
    start: datetime, due: datetime, within: timedelta, watchdog_faults: Sequence[Entry]
) -> datetime | None:
    """When the record of a kill struck after ``start`` is due at the latest: ``due``,
    unless the watchdog could not watch meanwhile. Frozen (SIGSTOP), it records
    nothing until its SIGCONT: ``within`` from then. Killed, it never will: None.
    ``watchdog_faults`` (the faults on the watchdog) are in order of injection."""
    for fault in watchdog_faults:
        began = fault.injected_at
        if began is None:
            continue
        if began > due:
            break
        ended = fault.healed_at or utcnow()
        if fault.planned.kind is FaultKind.KILL and began >= start:
            return None
        if fault.planned.kind is FaultKind.STOP and ended >= start:
            due = max(due, ended + within)
    return due


def _explains(entry: Entry, event: dict[str, Any], grace: timedelta) -> bool:
    if entry.injected_at is None or entry.restarts is None:
        return False
    if not fnmatch.fnmatchcase(str(event["program"]), entry.restarts):
        return False
    end = (entry.healed_at or utcnow()) + grace
    at: datetime = event["at"]
    return bool(entry.injected_at - timedelta(seconds=1) <= at <= end)


def _replica_problem(path: Path, size: int) -> str | None:
    if not path.exists():
        return "missing"
    actual = path.stat().st_size
    if actual != size:
        return f"{actual} bytes, not {size}"
    report = verify_file(path, check_parity=False)
    if not report.ok:
        return "; ".join(report.problems()) or "does not match its manifest"
    return None


def count_by(violations: Sequence[Violation]) -> Counter[str]:
    """Violations per invariant (every invariant listed, zero included)."""
    counts: Counter[str] = Counter(dict.fromkeys(INVARIANTS, 0))
    counts.update(v.invariant for v in violations)
    return counts
