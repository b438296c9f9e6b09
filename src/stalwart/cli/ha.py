"""``stalwart ha status``, ``stalwart ha monitor`` and ``stalwart ha step-down ROLE``."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from stalwart.bus import Transport, open_bus, redact_url
from stalwart.cli._columns import Col, WideOption, fit_table, print_table, width_for
from stalwart.cli._common import ConfigOption, console, run, say, settings_from
from stalwart.cli._engine import store_engine
from stalwart.config import Settings
from stalwart.envelope import default_sender
from stalwart.errors import StalwartError
from stalwart.ha import HaSettings, HaStatus, HealthMonitors, request_step_down, status
from stalwart.ha.probes import probe
from stalwart.service import EventPublisher
from stalwart.store.engine import make_engine

__all__ = ["register"]

_STATE_STYLE = {"healthy": "green", "suspect": "yellow", "recovering": "cyan", "failed": "bold red"}


def _store_url(settings: Settings) -> str:
    return settings.section("ha", HaSettings).store_url or settings.store.url


async def _status(settings: Settings) -> HaStatus:
    async with store_engine(settings, _store_url(settings)) as engine:
        return await status(engine)


def _when(epoch: float) -> str:
    if epoch <= 0:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


_LEASES = (
    Col("role", whole=True),
    Col("holder", min_width=12),
    Col("token", drop=3, whole=True, justify="right"),
    Col("state", wrap=True),
    Col("expires in", drop=1, whole=True),
    Col("renewed", drop=2, whole=True),
)
_REPLICAS = (Col("role", whole=True), Col("holder", min_width=12), Col("state"), Col("seen"))
_CHECKPOINTS = (
    Col("role", whole=True),
    Col("version", whole=True, justify="right"),
    Col("token", drop=2, whole=True, justify="right"),
    Col("holder", drop=3, min_width=12),
    Col("saved", drop=1, whole=True),
)
_MONITORS = (
    Col("name", whole=True),
    Col("kind", drop=3, whole=True),
    Col("state", whole=True),
    Col("active URL", drop=2, min_width=16),
    Col("since", drop=1, whole=True),
    Col("detail", wrap=True, min_width=16),
)
_TRANSITIONS = (
    Col("at", drop=1, whole=True),
    Col("monitor", min_width=10),
    Col("from", whole=True),
    Col("to", whole=True),
    Col("reason", wrap=True, min_width=16),
)
_PROBES = (
    Col("monitor", whole=True),
    Col("url", drop=1, min_width=16),
    Col("result", whole=True),
    Col("seconds", drop=2, whole=True, justify="right"),
    Col("detail", wrap=True, min_width=16),
)


def _print_status(shown: HaStatus, width: int | None) -> None:
    leases = []
    for lease in shown.leases:
        state = "[green]held[/]" if lease.live else "[dim]free[/]"
        if lease.stepdown_requested:
            state += " (step-down requested)"
        leases.append(
            [
                escape(lease.role),
                escape(lease.holder or "-"),
                str(lease.token),
                state,
                f"{lease.expires_in:.1f}s" if lease.live else "-",
                _when(lease.renewed_at),
            ]
        )
    if leases:
        print_table(fit_table(_LEASES, leases, width, title="leases"))
    else:
        console.print("no leases yet: no HA service has run")
    if shown.replicas:
        rows = [
            [
                escape(r.role),
                escape(r.holder),
                "[green]active[/]" if r.state == "active" else "standby",
                f"{r.seen_ago:.1f}s ago",
            ]
            for r in shown.replicas
        ]
        title = "replicas seen in the last three lease times"
        print_table(fit_table(_REPLICAS, rows, width, title=title))
    if shown.checkpoints:
        rows = [
            [
                escape(cp.role),
                str(cp.version),
                str(cp.token),
                escape(cp.holder),
                _when(cp.created_at),
            ]
            for cp in shown.checkpoints
        ]
        print_table(fit_table(_CHECKPOINTS, rows, width, title="latest checkpoints"))
    if not shown.monitors:
        console.print("no monitor transitions recorded")
    else:
        rows = [
            [
                escape(m.name),
                m.kind,
                f"[{_STATE_STYLE.get(m.state, 'white')}]{m.state}[/]",
                escape(m.active_url),
                _when(m.since),
                escape(m.detail),
            ]
            for m in shown.monitors
        ]
        print_table(fit_table(_MONITORS, rows, width, title="monitors"))
    if shown.transitions:
        rows = [
            [_when(t.at), escape(t.monitor), t.from_state, t.to_state, escape(t.reason)]
            for t in shown.transitions[:20]
        ]
        print_table(fit_table(_TRANSITIONS, rows, width, title="recent transitions"))


async def _open_events(settings: Settings) -> tuple[Transport | None, EventPublisher]:
    """The bus for events; monitoring goes on without it if the bus itself is down."""
    sender = default_sender("ha-monitor", settings.site)
    transport = open_bus(settings)
    try:
        await transport.start()
    except StalwartError as exc:
        console.print(f"[yellow]bus unavailable, events only stored:[/] {escape(str(exc))}")
        return None, EventPublisher(None, sender)
    return transport, EventPublisher(transport, sender)


async def _monitor(settings: Settings) -> None:
    ha = settings.section("ha", HaSettings)
    if not ha.monitors:
        raise StalwartError(
            "no monitors configured: add ha.monitors entries to stalwart.toml "
            '(e.g. name = "broker", kind = "amqp", urls = ["amqp://..."])'
        )
    engine = make_engine(_store_url(settings), pool_pre_ping=True)
    transport, events = await _open_events(settings)
    group = HealthMonitors(ha.monitors, engine, events)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    group.start()
    console.print(f"monitoring {', '.join(m.name for m in ha.monitors)}; Ctrl-C to stop")
    try:
        await stop.wait()
    finally:
        await group.stop()
        if transport is not None:
            await transport.close()
        await engine.dispose()


async def _probe_once(settings: Settings) -> list[tuple[str, str, bool, str, float]]:
    ha = settings.section("ha", HaSettings)
    results: list[tuple[str, str, bool, str, float]] = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console) as bar:
        task = bar.add_task("probing", total=sum(len(m.urls) for m in ha.monitors))
        for m in ha.monitors:
            for url in m.urls:
                bar.update(task, description=f"probing {m.name}")
                r = await probe(m.kind, url, timeout=m.timeout, expect_status=m.expect_status)
                results.append((m.name, url, r.ok, r.detail, r.seconds))
                bar.advance(task)
    return results


async def _step_down(settings: Settings, role: str, wait: float) -> tuple[int | None, str]:
    async with store_engine(settings, _store_url(settings)) as engine:
        token = await request_step_down(engine, role)
        if token is None or wait <= 0:
            return token, ""
        deadline = time.monotonic() + wait
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            bar.add_task(f"waiting for {role} to change hands", total=None)
            while time.monotonic() < deadline:
                lease = next((x for x in (await status(engine)).leases if x.role == role), None)
                if lease is not None and lease.token != token:
                    return token, f"now held by {lease.holder} with token {lease.token}"
                if lease is not None and not lease.live:
                    return token, "released; no standby has taken it yet"
                await asyncio.sleep(0.2)
        return token, f"still held after {wait:.0f}s; the holder steps down at its next renewal"


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="High availability: leases, checkpoints, health monitors.\n\n"
        "Example: stalwart ha status -c stalwart.toml",
        no_args_is_help=True,
    )
    app.add_typer(group, name="ha")

    @group.command("status")
    def status_command(
        config: ConfigOption = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
        wide: WideOption = False,
    ) -> None:
        """Show who holds each role, the latest checkpoints, monitors and transitions.

        Example: stalwart ha status -c stalwart.toml
        """
        shown = run(_status(settings_from(config)))
        if as_json:
            typer.echo(json.dumps(shown.to_dict()))
        else:
            _print_status(shown, width_for(wide))

    @group.command("monitor")
    def monitor_command(
        config: ConfigOption = None,
        once: Annotated[
            bool, typer.Option("--once", help="Probe every URL once, print, and exit.")
        ] = False,
    ) -> None:
        """Watch the critical services listed under ha.monitors: repair, then fail over.

        Transitions are stored and published on sys.ha.monitor; a switch to a
        backup URL also on sys.ha.failover. Runs until SIGTERM/SIGINT.

        Example: stalwart ha monitor -c stalwart.toml
        """
        settings = settings_from(config)
        if not once:
            run(_monitor(settings))
            return
        results = run(_probe_once(settings))
        rows = [
            [
                escape(name),
                escape(redact_url(url)),
                "[green]ok[/]" if ok else "[red]down[/]",
                f"{seconds:.2f}",
                escape(redact_url(detail)),
            ]
            for name, url, ok, detail, seconds in results
        ]
        table = fit_table(_PROBES, rows, width_for(False), title="probes")
        print_table(table)
        if not all(ok for _, _, ok, _, _ in results):
            raise typer.Exit(1)

    @group.command("step-down")
    def step_down_command(
        role: Annotated[str, typer.Argument(help="The role, e.g. service.dispatcher.")],
        config: ConfigOption = None,
        wait: Annotated[
            float,
            typer.Option("--wait", min=0, max=86_400, help="Seconds to wait for the handover."),
        ] = 30.0,
    ) -> None:
        """Ask the holder of ROLE to step down so that a standby takes over.

        The holder stops acting and releases at its next renewal; nobody
        acquires before that, so two holders never act at once.

        Example: stalwart ha step-down service.dispatcher -c stalwart.toml
        """
        token, outcome = run(_step_down(settings_from(config), role, wait))
        if token is None:
            raise StalwartError(
                f"nobody holds {role!r} now; see `stalwart ha status` for the roles"
            )
        say(f"step-down requested from token {token}. {outcome}".strip())
