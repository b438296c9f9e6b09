"""One campaign: start the demo, strike by the schedule, heal, settle, check, report.

Whatever happens (a failed injection, Ctrl-C, an error), every fault injected is
healed, the demo is stopped and the site disks are unmounted before
:func:`run_campaign` returns or raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from stalwart.bus import open_bus
from stalwart.chaos.checker import Checker, Limits, watchdog_events
from stalwart.chaos.disks import SiteDisks
from stalwart.chaos.events import Phase, Recorder
from stalwart.chaos.faults import Lab, Unavailable, injectable, make_fault
from stalwart.chaos.journal import Entry
from stalwart.chaos.report import Outcome, write_report
from stalwart.chaos.schedule import FaultKind, Planned, plan
from stalwart.chaos.system import LEAKER, DemoSystem, SystemSpec
from stalwart.config import load_settings
from stalwart.demo.models import SITES
from stalwart.demo.source import feed
from stalwart.envelope import utcnow
from stalwart.errors import StalwartError
from stalwart.store import Store

__all__ = ["CampaignOptions", "run_campaign", "targets_for"]

_READY: Final = 120.0  # seconds the demo may take to start
_MIN_PROGRAMS: Final = 10


@dataclass
class CampaignOptions:
    seed: int
    duration: float
    report: Path
    interval: float = 1.0  # seconds between demo units
    gap: float = 10.0  # mean seconds between faults
    settle: float = 120.0  # seconds after the schedule for units to finish
    limits: Limits = field(default_factory=Limits)
    kinds: frozenset[FaultKind] | None = None  # None: every kind this host can inject


def targets_for(programs: list[str], disks: list[str]) -> dict[FaultKind, list[str]]:
    """Where each kind can strike, given the running programs and the sites with disks."""
    processes = [p for p in programs if p != LEAKER] + ["watchdog", "ha-leader"]
    targets = {
        FaultKind.KILL: processes,
        FaultKind.STOP: processes,
        FaultKind.LEAK: [LEAKER] if LEAKER in programs else [],
        FaultKind.SLOW_PIPELINE: [p for p in programs if p.startswith("pipeline-")],
        FaultKind.DISK_FULL: sorted(disks),
        FaultKind.CORRUPT_TRANSFER: list(SITES),
        FaultKind.TRUNCATE_TRANSFER: list(SITES),
    }
    return {kind: found for kind, found in targets.items() if found}


def cannot_inject(disks: SiteDisks) -> dict[str, str]:
    """Fault kinds this host cannot inject, and why."""
    cannot = {
        kind.value: "needs the simulated sites (network namespaces), not built yet"
        for kind in FaultKind
        if kind not in injectable()
    }
    if not disks.mounted:
        cannot[FaultKind.DISK_FULL.value] = SiteDisks.why_not() or "no site disks"
    return cannot


async def run_campaign(options: CampaignOptions, say: Callable[[str], None] = print) -> Outcome:
    """Run the campaign of ``options``; write its report; return what it found."""
    began = time.monotonic()
    spec = SystemSpec(root=options.report / "run")
    spec.write_config()
    disks = SiteDisks()
    if SiteDisks.why_not() is None:
        disks.mount({site: spec.archive(site) for site in SITES})
    store = await Store.open(spec.store)
    system = DemoSystem(spec)
    try:
        system.start()
        programs = await system.wait_ready(_MIN_PROGRAMS, _READY)
        await _flowing(Checker(system.engine, utcnow()), _READY)
        cannot = cannot_inject(disks)
        for kind, why in sorted(cannot.items()):
            say(f"cannot inject {kind}: {why}")
        targets = targets_for(programs, list(disks.sites()))
        kinds = [k for k in targets if options.kinds is None or k in options.kinds]
        schedule = plan(options.seed, options.duration, kinds, targets, gap=options.gap)
        say(f"seed {options.seed}: {len(schedule)} faults over {options.duration:.0f}s")
        since = utcnow()
        journal = [Entry(i, planned) for i, planned in enumerate(schedule)]
        lab = Lab(system, random.Random(options.seed), frozenset(disks.sites()))
        recorder = Recorder(store)
        async with _feeding(spec, options):
            await _strike_all(journal, lab, recorder, options, say)
        say("schedule done; waiting for every unit to finish")
        checker = Checker(system.engine, since, options.limits)
        await _settle(checker, options.settle)
        violations = await checker.check(journal)
        events = await watchdog_events(system.engine, since)
    finally:
        await system.close()
        disks.close()
        await store.close()
    outcome = Outcome(
        seed=options.seed,
        duration=options.duration,
        started=since,
        wall=time.monotonic() - began,
        journal=journal,
        violations=violations,
        events=events,
        cannot=cannot,
    )
    write_report(outcome, options.report)
    return outcome


@contextlib.asynccontextmanager
async def _feeding(spec: SystemSpec, options: CampaignOptions) -> AsyncIterator[None]:
    """Feed units (seeded by the campaign) while the schedule runs, and only then."""
    transport = open_bus(load_settings(spec.config))
    await transport.start()
    feeder = asyncio.create_task(
        feed(transport, units=None, interval=options.interval, site="jao", seed=options.seed)
    )
    try:
        yield
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await transport.close()


async def _strike_all(
    journal: list[Entry],
    lab: Lab,
    recorder: Recorder,
    options: CampaignOptions,
    say: Callable[[str], None],
) -> None:
    start = time.monotonic()
    for entry in journal:
        await asyncio.sleep(max(0.0, start + entry.planned.at - time.monotonic()))
        await _strike(entry, lab, recorder, options.seed, say)
    await asyncio.sleep(max(0.0, start + options.duration - time.monotonic()))


async def _strike(
    entry: Entry, lab: Lab, recorder: Recorder, seed: int, say: Callable[[str], None]
) -> None:
    """Aim, record, inject, hold and heal one fault (healing whatever happens)."""
    planned: Planned = entry.planned
    kind, target = planned.kind.value, planned.target
    try:
        fault = make_fault(planned, lab)
        await fault.aim()
    except Unavailable as exc:
        entry.skipped = str(exc)
        await recorder.record(seed, entry.index, kind, target, Phase.SKIPPED, entry.skipped)
        say(f"[{entry.index}] {planned.label()}: skipped, {exc}")
        return
    await recorder.record(seed, entry.index, kind, target, Phase.INJECTED)
    entry.injected_at = utcnow()
    try:
        entry.detail = await fault.inject()
        entry.restarts = fault.restarts
        say(f"[{entry.index}] {planned.label()}: {entry.detail}")
        await asyncio.sleep(planned.hold)
    except OSError as exc:
        entry.detail = f"injection failed: {exc}"
        say(f"[{entry.index}] {planned.label()}: {entry.detail}")
    finally:
        try:
            entry.heal_detail = await fault.heal()
        except Exception as exc:  # noted in the report; the next faults still run
            entry.heal_detail = f"heal failed: {exc!r}"
        entry.healed_at = utcnow()
        with contextlib.suppress(StalwartError):  # a store away must not stop the healing
            await recorder.record(seed, entry.index, kind, target, Phase.HEALED, entry.heal_detail)


async def _flowing(checker: Checker, timeout: float) -> None:
    """Wait for the first unit to be delivered: every part of the demo works."""
    deadline = time.monotonic() + timeout
    while not (await checker.units())[1]:
        if time.monotonic() > deadline:
            raise StalwartError(
                f"no demo unit was delivered within {timeout:.0f}s of the start; "
                "see up.log in the report directory"
            )
        await asyncio.sleep(1.0)


async def _settle(checker: Checker, timeout: float) -> None:
    """Wait until no delivery is pending and every unit is delivered, or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = await checker.final_states()
        ready, delivered = await checker.units()
        if not pending and ready and set(ready) <= set(delivered):
            return
        await asyncio.sleep(2.0)
