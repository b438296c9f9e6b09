"""``stalwart status``: what runs where, from heartbeats and the watchdog."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stalwart.cli._common import ConfigOption, age, console, handle_errors, run, settings_from
from stalwart.config import Settings
from stalwart.store import Store
from stalwart.store.queries import ComponentView, components
from stalwart.watchdog import ProgramState, program_states

__all__ = ["register"]

_STYLE = {"up": "green", "late": "yellow", "down": "red"}


async def _gather(settings: Settings) -> tuple[list[ComponentView], list[ProgramState]]:
    async with await Store.open(settings.store.url) as store:
        return await components(store), await program_states(store.engine)


def _services_table(views: list[ComponentView]) -> Table:
    table = Table(
        "site",
        "service",
        "instance",
        "host:pid",
        "state",
        "last beat",
        "in flight",
        "processed",
        "failed",
        title="services (from heartbeats)",
    )
    for v in sorted(views, key=lambda v: (v.site, v.service, v.instance)):
        state = str(v.availability)
        style = _STYLE.get(state, "white")
        table.add_row(
            escape(v.site),
            escape(v.service),
            escape(v.instance[-22:]),
            f"{escape(v.host)}:{v.pid}",
            f"[{style}]{state}[/]" + (" (stopped)" if v.stopping else ""),
            f"{age(v.age)} ago",
            str(v.inflight),
            str(v.processed),
            str(v.failed),
        )
    return table


def _programs_table(programs: list[ProgramState]) -> Table:
    table = Table(
        "program",
        "instance",
        "host",
        "pid",
        "state",
        "restarts",
        "last event",
        "reason",
        title="programs (from the watchdog)",
    )
    for p in programs:
        table.add_row(
            escape(p.program),
            str(p.instance),
            escape(p.host),
            str(p.pid or "-"),
            escape(p.state),
            str(p.restarts),
            escape(p.last_event or "-"),
            escape((p.last_reason or "-")[:60]),
        )
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def status(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
        config: ConfigOption = None,
    ) -> None:
        """Services and instances (up / late / down from heartbeats) and supervised programs.

        Late: no heartbeat for 2 intervals; down: none for 5. Reads the store, so
        the persistence subscriber (`stalwart persist`, started by `stalwart up`) must run.

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
                "subscriber (`stalwart persist`)"
            )
            return
        if views:
            console.print(_services_table(views))
        if programs:
            console.print(_programs_table(programs))
