"""One campaign: start the demo, strike by the schedule, heal, settle, check, report.

Whatever happens (a failed injection, Ctrl-C, an error), every fault injected is
healed, the demo is stopped and the site disks are unmounted before
:func:`run_campaign` returns or raises. What a campaign killed with SIGKILL left
behind, the next one removes when it starts (:mod:`stalwart.chaos.leftovers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from stalwart.bus import open_bus
from stalwart.chaos.broker import HubBroker
from stalwart.chaos.checker import Checker, Limits, watchdog_events
from stalwart.chaos.disks import SiteDisks
from stalwart.chaos.events import Phase, Recorder
from stalwart.chaos.faults import Lab, Unavailable, make_fault
from stalwart.chaos.journal import Entry
from stalwart.chaos.leftovers import Claim, reap
from stalwart.chaos.report import Outcome, write_report
from stalwart.chaos.schedule import FaultKind, Planned, plan
from stalwart.chaos.sites import Sites
from stalwart.chaos.system import LEAKER, DemoSystem, SystemSpec
from stalwart.config import load_settings
from stalwart.demo import services as demo_services
from stalwart.demo.models import SITES
from stalwart.demo.source import feed
from stalwart.dev.postgres import PrivatePostgres
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
    sites: bool = True  # (root) each site's programs in a namespace, a broker cluster at the hub


def targets_for(
    programs: list[str],
    disks: Sequence[str],
    sites: Sequence[str] = (),
    brokers: Sequence[str] = (),
    postgres: bool = False,
) -> dict[FaultKind, list[str]]:
    """Where each kind can strike, given the running programs, the sites with a disk of
    their own, the sites with a namespace of their own, the campaign's own broker nodes,
    and whether the store's PostgreSQL is the campaign's own."""
    processes = [p for p in programs if p != LEAKER] + ["watchdog", "ha-leader"]
    targets = {
        FaultKind.KILL: processes,
        FaultKind.STOP: processes,
        FaultKind.LEAK: [LEAKER] if LEAKER in programs else [],
        FaultKind.SLOW_PIPELINE: [p for p in programs if p.startswith("pipeline-")],
        FaultKind.DISK_FULL: sorted(disks),
        FaultKind.CORRUPT_TRANSFER: list(SITES),
        FaultKind.TRUNCATE_TRANSFER: list(SITES),
        FaultKind.WAN_CUT: list(sites),
        FaultKind.BROKER_NODE_LOSS: list(brokers),
        FaultKind.BROKER_PARTITION: list(brokers),
        FaultKind.POSTGRES_RESTART: ["store"] if postgres else [],
    }
    return {kind: found for kind, found in targets.items() if found}


def cannot_inject(disks: SiteDisks, sites: Sites | None, why_no_sites: str) -> dict[str, str]:
    """Fault kinds this campaign cannot inject, and why."""
    cannot = {}
    if not disks.mounted:
        cannot[FaultKind.DISK_FULL.value] = SiteDisks.why_not() or "no site disks"
    if sites is None:
        for kind in (
            FaultKind.WAN_CUT,
            FaultKind.BROKER_NODE_LOSS,
            FaultKind.BROKER_PARTITION,
            FaultKind.POSTGRES_RESTART,
        ):
            cannot[kind.value] = why_no_sites
    return cannot


def effectively_once() -> frozenset[str]:
    """The demo's services whose every handler is idempotent (claims the message id)."""
    return frozenset(
        service.name
        for service in demo_services.ALL
        if service.handlers and all(handler.idempotent for handler in service.handlers)
    )


class _Layout(contextlib.AsyncExitStack):
    """The campaign's infrastructure: site disks, site namespaces with the broker and
    the store's PostgreSQL at their hub, the demo; leaving it undoes all of it, in
    reverse. Its record (a :class:`Claim`) lists each part before it is made and goes
    last, so a campaign killed before it could undo them leaves the next one a list."""

    def __init__(self, options: CampaignOptions, say: Callable[[str], None]) -> None:
        super().__init__()
        self.options = options
        self.say = say
        self.disks = SiteDisks()
        self.sites: Sites | None = None
        self.broker: HubBroker | None = None
        self.postgres: PrivatePostgres | None = None
        self.why_no_sites = "" if options.sites else "--no-sites: the demo runs in one namespace"

    async def build(self) -> DemoSystem:
        # Absolute: the record names the demo's settings, as its processes' environment does.
        root = (self.options.report / "run").resolve()
        # Twice the planned run: the schedule can slip behind under load.
        keep = max(3600.0, 2 * (self.options.duration + self.options.settle))
        spec = SystemSpec(root=root, keep_store_for=keep)
        for reaped in reap():
            self.say(f"removed leftovers of a campaign that was killed: {reaped}")
        claim = Claim(config=spec.config)
        self.callback(claim.release)
        if SiteDisks.why_not() is None:
            disks = {site: root / "home" / "demo" / "archive" / site for site in SITES}
            claim.note(mounts=[str(path) for path in disks.values()])
            self.callback(self.disks.close)
            self.disks.mount(disks)
        if self.options.sites:
            self.why_no_sites = Sites.why_not() or ""
        if self.options.sites and not self.why_no_sites:
            sites = Sites(SITES, tag=claim.tag)
            claim.note(namespaces=[sites.netns(s) for s in SITES], bridge=sites.bridge_name)
            self.callback(sites.close)
            sites.build()
            self.sites = sites
            if sites.distance_note:
                self.say(sites.distance_note)
            broker = HubBroker(sites.broker_addresses)
            claim.note(broker=str(broker.cluster.root))
            self.callback(broker.close)
            postgres = PrivatePostgres(sites.store_address)
            claim.note(postgres=str(postgres.root))
            self.callback(postgres.close)
            nodes = ", ".join(sites.broker_addresses)
            self.say(f"starting RabbitMQ at {nodes} and PostgreSQL at {postgres.host}")
            await asyncio.gather(asyncio.to_thread(broker.start), asyncio.to_thread(postgres.start))
            self.broker, self.postgres = broker, postgres
            spec = SystemSpec(
                root=root,
                bus_url=broker.url,
                store_url=postgres.url,
                netns={site: sites.netns(site) for site in SITES},
                keep_store_for=keep,
            )
            spec.write_shim()
        spec.write_config()
        system = DemoSystem(spec)
        self.push_async_callback(system.close)
        return system


async def run_campaign(options: CampaignOptions, say: Callable[[str], None] = print) -> Outcome:
    """Run the campaign of ``options``; write its report; return what it found."""
    began = time.monotonic()
    async with _Layout(options, say) as layout:
        system = await layout.build()
        store = await Store.open(system.spec.store)
        layout.push_async_callback(store.close)
        system.start()
        programs = await system.wait_ready(_MIN_PROGRAMS, _READY)
        await _flowing(Checker(system.engine, utcnow()), _READY)
        cannot = cannot_inject(layout.disks, layout.sites, layout.why_no_sites)
        for kind, why in sorted(cannot.items()):
            say(f"cannot inject {kind}: {why}")
        sites = list(SITES) if layout.sites is not None else []
        targets = targets_for(
            programs,
            list(layout.disks.sites()),
            sites,
            brokers=layout.broker.targets if layout.broker is not None else (),
            postgres=layout.postgres is not None,
        )
        kinds = [k for k in targets if options.kinds is None or k in options.kinds]
        schedule = plan(options.seed, options.duration, kinds, targets, gap=options.gap)
        say(f"seed {options.seed}: {len(schedule)} faults over {options.duration:.0f}s")
        since = utcnow()
        journal = [Entry(i, planned) for i, planned in enumerate(schedule)]
        lab = Lab(
            system,
            random.Random(options.seed),
            frozenset(layout.disks.sites()),
            layout.sites,
            layout.broker,
            layout.postgres,
        )
        recorder = Recorder(store)
        async with _feeding(system.spec, options):
            await _strike_all(journal, lab, recorder, options, say)
        say("schedule done; waiting for every unit to finish")
        checker = Checker(system.engine, since, options.limits, effectively_once())
        await _settle(checker, options.settle)
        violations = await checker.check(journal)
        events = await watchdog_events(system.engine, since)
        tag = layout.sites.tag if layout.sites is not None else None
    outcome = Outcome(
        seed=options.seed,
        duration=options.duration,
        gap=options.gap,
        started=since,
        wall=time.monotonic() - began,
        journal=journal,
        violations=violations,
        events=events,
        cannot=cannot,
        sites_tag=tag,
        interval=options.interval,
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
    struck = utcnow()  # the record must be in the store within 2 s of this
    await recorder.record(seed, entry.index, kind, target, Phase.INJECTED)
    entry.injected_at = struck
    try:
        entry.detail = await fault.inject()
        entry.restarts = fault.restarts
        say(f"[{entry.index}] {planned.label()}: {entry.detail}")
        await asyncio.sleep(planned.hold)
    except Exception as exc:  # noted in the report; the fault is still healed
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
