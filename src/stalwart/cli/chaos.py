"""``stalwart chaos``: a seeded fault campaign against the demo observatory."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from stalwart.cli._common import ConfigOption, run, say, settings_from
from stalwart.cli._params import duration as parse_duration

__all__ = ["campaign", "register", "until_signalled"]

T = TypeVar("T")


async def until_signalled(work: Awaitable[T]) -> T:
    """Await ``work``; SIGTERM or SIGINT cancels it, so that the campaign heals what it
    injected and removes what it made on its way out, as on Ctrl-C in a terminal.
    (A job a shell starts in the background ignores SIGINT, and Python's default
    SIGTERM ends the process at once, leaving namespaces and servers behind.)"""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, task.cancel)
    try:
        return await task
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def campaign(
    seed: int | None,
    duration: float,
    report: Path,
    interval: float,
    sites: bool = True,
    gap: float = 10.0,
) -> None:
    """Run one campaign, print its verdict; exit status 1 when an invariant broke."""
    from stalwart.chaos.campaign import CampaignOptions, run_campaign
    from stalwart.chaos.report import replay_command

    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    replay = replay_command(seed, duration, gap, interval)
    say(f"chaos campaign, seed {seed} (replay: {replay}); report in {report}")
    options = CampaignOptions(
        seed=seed, duration=duration, report=report, interval=interval, sites=sites, gap=gap
    )
    try:
        outcome = run(until_signalled(run_campaign(options, say)))
    except asyncio.CancelledError:
        say("campaign stopped by a signal: what it injected is healed, what it made removed")
        raise typer.Exit(130) from None
    counts: dict[str, int] = {}
    for violation in outcome.violations:
        counts[violation.invariant] = counts.get(violation.invariant, 0) + 1
    injected = sum(1 for entry in outcome.journal if entry.injected_at is not None)
    say(f"{injected} faults injected in {outcome.wall:.0f}s; report: {report / 'report.md'}")
    if counts:
        listed = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
        say(f"FAIL: {len(outcome.violations)} violation(s) ({listed})")
        raise typer.Exit(1)
    say("PASS: every invariant held")


def reap_only() -> None:
    """Remove what killed campaigns left behind, and say what; start no campaign."""
    from stalwart.chaos.leftovers import reap

    reaped = reap()
    for line in reaped:
        say(f"removed leftovers of a campaign that was killed: {line}")
    if not reaped:
        say("no leftovers of a killed campaign")


def register(app: typer.Typer) -> None:
    @app.command("chaos")
    def chaos_command(
        duration: Annotated[
            float,
            typer.Option(parser=parse_duration, help="How long faults are injected: 90s, 3m, 1h."),
        ] = 180.0,
        seed: Annotated[
            int | None,
            typer.Option(
                min=0, max=2**63 - 1, help="The schedule's seed (default: a random one, printed)."
            ),
        ] = None,
        report: Annotated[
            Path, typer.Option(file_okay=False, help="Directory for report.md and timeline.png.")
        ] = Path("chaos-report"),
        interval: Annotated[
            float, typer.Option(min=0.1, max=60.0, help="Seconds between demo units.")
        ] = 1.0,
        gap: Annotated[
            float,
            typer.Option(
                min=2.0,
                max=3600.0,
                help="Mean seconds between faults; a fault stays at most half its slot.",
            ),
        ] = 10.0,
        sites: Annotated[
            bool,
            typer.Option(
                help="Root: run each site's programs in a network namespace of its own, "
                "with a 3-node RabbitMQ cluster and PostgreSQL at the hub (WAN cut, broker "
                "node and store faults).",
            ),
        ] = True,
        reap: Annotated[
            bool,
            typer.Option(
                "--reap-only",
                help="Only remove what killed campaigns left (namespaces, disks, broker, "
                "PostgreSQL, demo processes), then exit.",
            ),
        ] = False,
        config: ConfigOption = None,
    ) -> None:
        """Strike the demo with a seeded fault campaign, check invariants: run the demo
        observatory in a private home, inject a schedule of faults drawn from the seed
        (kill -9, SIGSTOP, memory leak, slow pipeline, full disk, damaged replicas,
        WAN cut, broker node loss and partition, PostgreSQL restart), heal each, then
        check the store's invariants and write report.md and timeline.png. Exit status
        0 only when no invariant broke. See docs/chaos.md.

        Example: stalwart chaos --duration 3m --seed 42 --report chaos-42
        """
        settings_from(config)  # this process's logging; the demo gets a home of its own
        if reap:
            reap_only()
            return
        campaign(seed, duration, report, interval, sites, gap)
