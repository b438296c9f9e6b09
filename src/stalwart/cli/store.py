"""Store commands: messages, show, reports; store persist, store upgrade, store prune."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stalwart.bus import open_bus, redact_url
from stalwart.cli._columns import WideOption, print_table, width_for
from stalwart.cli._common import (
    ConfigOption,
    age,
    console,
    run,
    say,
    settings_from,
)
from stalwart.cli._existing import refuse_missing
from stalwart.cli._params import MAX_COUNT, moment
from stalwart.cli._store_render import detail_view, messages_table, reports_table
from stalwart.config import Settings
from stalwart.envelope import DeliveryState
from stalwart.errors import StalwartError
from stalwart.messages import ReportLevel
from stalwart.startup import start_when_reachable
from stalwart.store import Persister, PersistOptions, Store, upgrade
from stalwart.store.queries import (
    MessageFilter,
    MessageSummary,
    find_messages,
    get_message,
    list_messages,
    list_reports,
)
from stalwart.store.retention import count_older, prune, prune_parts

__all__ = ["register"]

_log = logging.getLogger("stalwart.cli.store")
_STATS_EVERY = 10.0
_CANDIDATES = 5  # ids listed when a short id is ambiguous


class MessageNotFound(StalwartError):
    """``stalwart show`` was given an id the store does not hold."""


@contextlib.asynccontextmanager
async def _opened(settings: Settings, *, create: bool = False) -> AsyncIterator[Store]:
    """The store; a command that only reads it refuses to create one (``create``)."""
    if not create:
        refuse_missing(settings, settings.store.url, "store")
    store = await Store.open(settings.store.url)
    try:
        yield store
    finally:
        await store.close()


def _print_json(data: object) -> None:
    console.print_json(json.dumps(data, default=str, ensure_ascii=False))


async def _messages(
    settings: Settings,
    filters: MessageFilter,
    limit: int,
    after: str | None,
    as_json: bool,
    width: int | None,
) -> None:
    async with _opened(settings) as store:
        page = await list_messages(store, filters, limit=limit, after=after)
    if as_json:
        _print_json(page.model_dump(mode="json"))
        return
    print_table(messages_table(page, width))
    if page.next_cursor:
        console.print(f"next: --after {page.next_cursor}", highlight=False, soft_wrap=True)


def _ambiguous(part: str, found: list[MessageSummary]) -> str:
    listed = ", ".join(f"{m.id} ({m.topic}, {m.created_at:%H:%M:%S})" for m in found[:_CANDIDATES])
    more = ", ..." if len(found) > _CANDIDATES else ""
    return f"{part!r} is part of several message ids: {listed}{more}; give more of the id"


async def _show(settings: Settings, message_id: str, as_json: bool, width: int | None) -> None:
    async with _opened(settings) as store:
        detail = await get_message(store, message_id)
        if detail is None:  # a short id: the end (as `tail` prints it) or start of one
            found = await find_messages(store, message_id, limit=_CANDIDATES + 1)
            if len(found) > 1:
                raise MessageNotFound(_ambiguous(message_id, found))
            detail = await get_message(store, found[0].id) if found else None
    if detail is None:
        raise MessageNotFound(
            f"no message {message_id!r} in the store; list ids with `stalwart messages`"
            " (is `stalwart store persist` running?)"
        )
    if as_json:
        _print_json(detail.model_dump(mode="json"))
    else:
        console.print(detail_view(detail, width), crop=False)


async def _persist(settings: Settings, options: PersistOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stores: list[Store] = []

    async def open_store() -> None:
        stores.append(await Store.open(settings.store.url))

    async with contextlib.AsyncExitStack() as stack:
        transport = open_bus(settings)
        stack.push_async_callback(transport.close)
        # The bus or the store may be down at start: wait for them, as services do.
        bus = f"the bus at {redact_url(settings.bus.url)}"
        if not await start_when_reachable(transport.start, bus, stop=stop):
            return
        if not await start_when_reachable(open_store, "the persister's store", stop=stop):
            return
        store = stores[0]
        stack.push_async_callback(store.close)
        token = os.environ.get("STALWART_TOKEN")  # signs its heartbeats, as services do
        persister = Persister(transport, store, options, site=settings.site, token=token)
        if not await start_when_reachable(persister.declare, "the persister", stop=stop):
            return
        runner = asyncio.create_task(persister.run(), name="persister")
        stopping = asyncio.create_task(stop.wait())
        stack.callback(stopping.cancel)
        say(f"persisting the bus into {store.engine.url.render_as_string()}")
        while not runner.done():
            await asyncio.wait(
                {runner, stopping}, timeout=_STATS_EVERY, return_when=asyncio.FIRST_COMPLETED
            )
            if stop.is_set():
                persister.stop()
            s = persister.stats
            _log.info(
                "persisted=%d batches=%d dead_lettered=%d retries=%d lag=%.3fs",
                s.persisted,
                s.batches,
                s.dead_lettered,
                s.retries,
                s.lag,
            )
        await runner


async def _upgrade(settings: Settings, revision: str) -> str | None:
    store = await Store.open(settings.store.url, migrate=False)
    try:
        return await upgrade(store.engine, revision)
    finally:
        await store.close()


async def _prune(settings: Settings, before: datetime, export: Path | None, batch: int) -> None:
    # The parts that keep tables in the store register how to prune them when imported.
    import stalwart.ha
    import stalwart.integrity
    import stalwart.service.claims  # the claims table (a service loads it only to claim)
    import stalwart.watchdog  # noqa: F401

    async with _opened(settings) as store:
        total = await count_older(store, before)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as bar:
            tasks = {"delete": bar.add_task("delete", total=total)}
            if export is not None:
                tasks["export"] = bar.add_task(escape(f"export to {export}"), total=total)
            result = await prune(
                store,
                before,
                export=export,
                batch=batch,
                progress=lambda phase, n: bar.advance(tasks[phase], n),
                forget_after=settings.store.forget_after,
            )
        parts = await prune_parts(store, settings.store)
    programs = parts.pop("watchdog_programs", 0)
    history = ", ".join(f"{n} {table}" for table, n in sorted(parts.items()) if n)
    say(
        f"pruned {result.messages} messages, {result.deliveries} deliveries, "
        f"{result.transitions} transitions, {result.reports} reports; forgot "
        f"{result.instances} instance(s) and {programs} program(s) gone for over "
        f"{age(settings.store.forget_after)}"
        + (f"; past their retention: {history}" if history else "")
        + (f"; exported {result.exported} to {export}" if export else "")
    )


def register(app: typer.Typer) -> None:
    store_app = typer.Typer(
        help="The message store: persist, upgrade, prune.\n\n"
        "Reading it is everyday work (stalwart messages, show, reports); keeping it is here.\n\n"
        "Example: stalwart store prune --older-than 90d",
        no_args_is_help=True,
    )
    app.add_typer(store_app, name="store")

    @app.command()
    def messages(
        config: ConfigOption = None,
        topic: Annotated[str | None, typer.Option(help="AMQP pattern: * one word, # any.")] = None,
        kind: Annotated[str | None, typer.Option(help="Body type name.")] = None,
        sender: Annotated[str | None, typer.Option(help="service, service@site or full.")] = None,
        service: Annotated[str | None, typer.Option(help="Delivered to this service.")] = None,
        state: Annotated[
            DeliveryState | None, typer.Option(help="Delivery state now, e.g. dead.")
        ] = None,
        ever_state: Annotated[
            DeliveryState | None,
            typer.Option(help="Ever in this state at a service (at --service if given)."),
        ] = None,
        min_attempts: Annotated[
            int | None,
            typer.Option(min=1, max=MAX_COUNT, help="Took at least N attempts at a service."),
        ] = None,
        since: Annotated[
            datetime | None,
            typer.Option(parser=moment, metavar="TIME", help="ISO time or age (10m, 2h)."),
        ] = None,
        until: Annotated[
            datetime | None, typer.Option(parser=moment, metavar="TIME", help="ISO time or age.")
        ] = None,
        correlation: Annotated[str | None, typer.Option(help="Correlation id.")] = None,
        text: Annotated[str | None, typer.Option(help="Words in topic, kind or body.")] = None,
        system: Annotated[
            bool | None, typer.Option("--system/--no-system", help="Show sys.* messages.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        wide: WideOption = False,
        limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
        after: Annotated[str | None, typer.Option(help="Cursor printed as 'next'.")] = None,
    ) -> None:
        """List stored messages, newest first, with their delivery states.

        Example: stalwart messages --topic 'pipeline.#' --state dead --since 2h

        Example: stalwart messages --service qa --ever-state failed --min-attempts 3
        """
        settings = settings_from(config)
        filters = MessageFilter(
            topic=topic,
            kind=kind,
            sender=sender,
            service=service,
            state=state,
            ever_state=ever_state,
            min_attempts=min_attempts,
            since=since,
            until=until,
            correlation_id=correlation,
            text=text,
            system=system,
        )
        run(_messages(settings, filters, limit, after, as_json, width_for(wide)))

    @app.command()
    def show(
        message_id: Annotated[
            str, typer.Argument(help="The message id, or its end as `tail` prints it.")
        ],
        config: ConfigOption = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        wide: WideOption = False,
    ) -> None:
        """Show one message: envelope (token masked), body, timeline and causal chain.

        ID is a whole id or a unique part of one: its end (the short id `stalwart
        tail` prints) or its start.

        Example: stalwart show 01930f4e-7a1b-7c3d-9e2f-0a1b2c3d4e5f

        Example: stalwart show 0a1b2c3d
        """
        run(_show(settings_from(config), message_id, as_json, width_for(wide)))

    @app.command()
    def reports(
        config: ConfigOption = None,
        level: Annotated[
            ReportLevel | None, typer.Option(help="Minimum level, e.g. warning.")
        ] = None,
        source: Annotated[str | None, typer.Option(help="Reporting tool or service.")] = None,
        since: Annotated[
            datetime | None,
            typer.Option(parser=moment, metavar="TIME", help="ISO time or age (10m, 2h)."),
        ] = None,
        limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        wide: WideOption = False,
    ) -> None:
        """List reports from batch tools and services, newest first.

        Example: stalwart reports --level warning --since 1d
        """
        settings = settings_from(config)

        async def body() -> None:
            async with _opened(settings) as store:
                rows = await list_reports(store, level, source, since, limit)
            if as_json:
                _print_json([r.model_dump(mode="json") for r in rows])
            else:
                print_table(reports_table(rows, width_for(wide)))

        run(body())

    @store_app.command("persist")
    def persist(
        config: ConfigOption = None,
        batch_size: Annotated[
            int, typer.Option(min=1, max=100_000, help="Envelopes per commit.")
        ] = 1000,
        batch_interval: Annotated[
            float, typer.Option(min=0.0, max=60.0, help="Seconds to fill a batch.")
        ] = 0.1,
        prefetch: Annotated[
            int, typer.Option(min=1, max=1_000_000, help="Unacked deliveries held.")
        ] = 4000,
        lease: Annotated[
            float,
            typer.Option(
                min=1.0, max=86_400.0, help="Seconds before an unacked delivery is redelivered."
            ),
        ] = 60.0,
        heartbeat: Annotated[
            float,
            typer.Option(
                min=0.1,
                max=3600.0,
                help="Seconds between heartbeats (sys.heartbeat.stalwart-persist), by which "
                "a watchdog tells a frozen persister from a healthy one.",
            ),
        ] = 1.0,
    ) -> None:
        """Run the persistence subscriber: every message and state into the store.

        Example: stalwart store persist --config stalwart.toml
        """
        options = PersistOptions(
            batch_size=batch_size,
            batch_interval=batch_interval,
            prefetch=max(prefetch, batch_size),
            lease=lease,
            heartbeat=heartbeat,
        )
        run(_persist(settings_from(config), options))

    @store_app.command("upgrade")
    def store_upgrade(
        config: ConfigOption = None,
        revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    ) -> None:
        """Create or migrate the store's tables to the newest schema.

        Example: stalwart store upgrade -c stalwart.toml
        """
        reached = run(_upgrade(settings_from(config), revision))
        say(f"store schema at revision {reached}")

    @store_app.command("prune")
    def store_prune(
        older_than: Annotated[
            datetime,
            typer.Option(
                "--older-than", "-o", parser=moment, metavar="TIME", help="Age (90d) or ISO time."
            ),
        ],
        config: ConfigOption = None,
        export: Annotated[
            Path | None, typer.Option(help="Write them first to this .jsonl.gz file.")
        ] = None,
        batch: Annotated[
            int, typer.Option(min=1, max=1_000_000, help="Rows per delete batch.")
        ] = 5000,
    ) -> None:
        """Delete messages (with their states) and reports older than a given age,
        forget instances and programs gone for longer than the store.forget_after setting,
        and prune the parts' history by its own retention (docs/store.md).

        Example: stalwart store prune --older-than 90d --export old.jsonl.gz
        """
        run(_prune(settings_from(config), older_than, export, batch))
