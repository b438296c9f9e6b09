"""``stalwart status``: what runs where, from heartbeats and the watchdog."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stalwart.cli._columns import Col, WideOption, fit_table, print_table, width_for
from stalwart.cli._common import ConfigOption, age, console, run, settings_from
from stalwart.cli._existing import refuse_missing
from stalwart.config import Settings
from stalwart.store import Store
from stalwart.store.queries import ComponentView, components
from stalwart.watchdog import ProgramState, program_states

__all__ = ["register"]

_STYLE = {"up": "green", "late": "yellow", "down": "red"}


async def _gather(settings: Settings) -> tuple[list[ComponentView], list[ProgramState]]:
    refuse_missing(settings, settings.store.url, "store")
    async with await Store.open(settings.store.url) as store:
        forget = settings.store.forget_after
        return await components(store, forget_after=forget), await program_states(
            store.engine, forget
        )


_SERVICE_COLUMNS = (
    Col("site", drop=1, min_width=4),
    Col("service", whole=True),
    Col("instance", drop=4, min_width=12),
    Col("host:pid", drop=5, min_width=10),
    Col("state", whole=True),
    Col("last beat", whole=True),
    Col("in flight", drop=3, whole=True, justify="right"),
    Col("processed", drop=2, whole=True, justify="right"),
    Col("failed", drop=2, whole=True, justify="right"),
)


def _services_table(views: list[ComponentView], width: int | None) -> Table:
    rows = []
    for v in sorted(views, key=lambda v: (v.site, v.service, v.instance)):
        state = str(v.availability)
        style = _STYLE.get(state, "white")
        rows.append(
            [
                escape(v.site),
                escape(v.service),
                escape(v.instance if width is None else v.instance[-22:]),
                f"{escape(v.host)}:{v.pid}",
                f"[{style}]{state}[/]" + (" (stopped)" if v.stopping else ""),
                f"{age(v.age)} ago",
                str(v.inflight),
                str(v.processed),
                str(v.failed),
            ]
        )
    return fit_table(_SERVICE_COLUMNS, rows, width, title="services (from heartbeats)")


_PROGRAM_COLUMNS = (
    Col("program", whole=True),
    Col("instance", drop=3, whole=True, justify="right"),
    Col("host", drop=4, min_width=8),
    Col("pid", drop=5, whole=True, justify="right"),
    Col("state", whole=True),
    Col("restarts", drop=1, whole=True, justify="right"),
    Col("last event", drop=2, whole=True),
    Col("reason", wrap=True, min_width=16),
)


def _programs_table(programs: list[ProgramState], width: int | None) -> Table:
    rows = [
        [
            escape(p.program),
            str(p.instance),
            escape(p.host),
            str(p.pid or "-"),
            escape(p.state),
            str(p.restarts),
            escape(p.last_event or "-"),
            escape(p.last_reason or "-"),
        ]
        for p in programs
    ]
    return fit_table(_PROGRAM_COLUMNS, rows, width, title="programs (from the watchdog)")


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
        wide: WideOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Services and instances (up / late / down from heartbeats) and supervised programs.

        Late: no heartbeat for 2 intervals; down: none for 5; gone for longer than
        [store] forget_after (24h): not shown. Reads the store, so the persistence
        subscriber (`stalwart store persist`, started by `stalwart up`) must run.

        Example: stalwart status --json
        """
        views, programs = run(_gather(settings_from(config)))
        if as_json:
            console.print_json(
                json.dumps(
                    {
                        "services": [v.model_dump(mode="json") for v in views],
                        "programs": [
                            {
                                "program": p.program,
                                "instance": p.instance,
                                "host": p.host,
                                "pid": p.pid,
                                "state": p.state,
                                "restarts": p.restarts,
                                "last_event": p.last_event,
                                "last_reason": p.last_reason,
                            }
                            for p in programs
                        ],
                    }
                )
            )
            return
        if not views and not programs:
            console.print(
                "nothing known yet: start services (`stalwart up`) and the persistence "
                "subscriber (`stalwart store persist`)"
            )
            return
        width = width_for(wide)
        if views:
            print_table(_services_table(views, width))
        if programs:
            print_table(_programs_table(programs, width))
