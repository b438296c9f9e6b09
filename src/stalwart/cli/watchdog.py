"""``stalwart watchdog``, ``stalwart watchdog status`` and ``stalwart watchdog beat``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stalwart.cli._columns import Col, WideOption, fit_table, print_table, width_for
from stalwart.cli._common import ConfigOption, age, console, run, settings_from
from stalwart.cli._engine import store_engine
from stalwart.config import Settings
from stalwart.watchdog import ProgramState, program_states, send_beat
from stalwart.watchdog.supervisor import serve

__all__ = ["register"]


async def _states(settings: Settings) -> list[ProgramState]:
    async with store_engine(settings, settings.store.url) as engine:
        return await program_states(engine, settings.store.forget_after)


def _since(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return age((datetime.now(UTC) - moment.replace(tzinfo=moment.tzinfo or UTC)).total_seconds())


def _mib(rss: int | None) -> str:
    return "-" if rss is None else f"{rss / 2**20:.1f}"


_STYLE = {"running": "green", "fatal": "bold red", "failed": "red", "degraded": "yellow"}


_COLUMNS = (
    Col("program", whole=True),
    Col("inst", drop=3, whole=True, justify="right"),
    Col("host", drop=5, min_width=8),
    Col("state", whole=True),
    Col("pid", drop=4, whole=True, justify="right"),
    Col("restarts", drop=2, whole=True, justify="right"),
    Col("up", drop=1, whole=True),
    Col("RSS MiB", whole=True, justify="right"),
    Col("CPU %", whole=True, justify="right"),
    Col("last event / reason", wrap=True, min_width=16),
)


def _table(states: list[ProgramState], width: int | None) -> Table:
    rows = []
    for s in states:
        style = _STYLE.get(s.state, "")
        rows.append(
            [
                escape(s.program),
                str(s.instance),
                escape(s.host),
                f"[{style}]{s.state}[/]" if style else escape(s.state),
                str(s.pid or "-"),
                str(s.restarts),
                _since(s.started_at) if s.state == "running" else "-",
                _mib(s.rss),
                "-" if s.cpu is None else f"{s.cpu:.0f}",
                escape(f"{s.last_event or '-'}: {s.last_reason or ''}"),
            ]
        )
    return fit_table(_COLUMNS, rows, width, title="supervised programs")


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Supervise programs: restart crashed, hung, slow and runaway ones.\n\n"
        "Example: stalwart watchdog -c stalwart.toml",
        no_args_is_help=False,
        invoke_without_command=True,
    )
    app.add_typer(group, name="watchdog")

    @group.callback(invoke_without_command=True)
    def watchdog(ctx: typer.Context, config: ConfigOption = None) -> None:
        """Supervise the programs of [watchdog] in stalwart.toml until SIGTERM/SIGINT.

        Example: stalwart watchdog -c stalwart.toml
        """
        if ctx.invoked_subcommand is not None:
            return
        run(serve(settings_from(config)))

    @group.command("status")
    def status(
        config: ConfigOption = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
        wide: WideOption = False,
    ) -> None:
        """Show every supervised program: state, restarts, last event and reason.

        Example: stalwart watchdog status -c stalwart.toml
        """
        states = run(_states(settings_from(config)))
        if as_json:
            for s in states:
                row = s.row()
                row["history"] = s.history
                typer.echo(json.dumps(row, default=str))
            return
        if not states:
            console.print("no supervised programs recorded; is `stalwart watchdog` running?")
            return
        print_table(_table(states, width_for(wide)))

    @group.command("beat")
    def beat(
        progress: Annotated[
            int | None,
            typer.Option("--progress", "-p", min=0, max=2**63 - 1, help="Work done so far."),
        ] = None,
        socket_path: Annotated[
            Path | None, typer.Option("--socket", help="Default: $STALWART_WATCHDOG_SOCKET.")
        ] = None,
        program: Annotated[
            str | None, typer.Option("--program", help="Default: $STALWART_PROGRAM.")
        ] = None,
        instance: Annotated[
            int | None,
            typer.Option("--instance", min=0, max=10_000, help="Default: $STALWART_INSTANCE."),
        ] = None,
        config: ConfigOption = None,
    ) -> None:
        """Tell the watchdog this program is alive (and how far it got).

        Example: stalwart watchdog beat --progress 42
        """
        send_beat(
            progress,
            socket_path=str(socket_path) if socket_path else None,
            program=program,
            instance=instance,
        )
