"""``stalwart outbox``: what waits in the local spool, and forwarding it now."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stalwart.bus import open_bus, redact_url
from stalwart.bus.outbox import OutboxTransport, SpoolStatus, destination, spool_status
from stalwart.cli._common import ConfigOption, console, run, settings_from
from stalwart.config import Settings

__all__ = ["register"]

_UNKNOWN = "not recorded (spooled by an older stalwart)"


def _status(settings: Settings) -> list[SpoolStatus]:
    path, bus = Path(settings.bus.outbox), destination(settings.bus.url)
    if not path.exists():
        return [SpoolStatus(str(path), 0, 0, None, bus=bus)]
    return spool_status(path, bus)


async def _flush(settings: Settings, timeout: float, adopt: bool, progress: Progress) -> int:
    # The embedded bus has no outbox of its own, but `stalwart report` spools for it
    # when its file cannot be opened: flush forwards to whichever bus is configured.
    outbox = OutboxTransport(
        open_bus(settings, outbox=False),
        settings.bus.outbox,
        durability=settings.bus.durability,
        max_message_size=settings.bus.max_message_size,
        forward=False,
    )
    await outbox.start()
    try:
        if adopt:
            await outbox.adopt()
        task = progress.add_task("forwarding", total=await outbox.pending())

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return await outbox.flush(timeout, advance)
    finally:
        await outbox.close()


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def register(app: typer.Typer) -> None:
    outbox = typer.Typer(
        help="The local store-and-forward spool.\n\nExample: stalwart outbox status",
        no_args_is_help=True,
    )
    app.add_typer(outbox, name="outbox")

    @outbox.command("status")
    def status(config: ConfigOption = None) -> None:
        """Show how many messages wait in the outbox for each bus, their size and the oldest.

        Example: stalwart outbox status -c stalwart.toml
        """
        settings = settings_from(config)
        found = _status(settings)
        table = Table(title=escape(found[0].path))
        table.add_column("bus", overflow="fold")  # a URL must read whole
        for name in ("pending", "bytes", "oldest (UTC)"):
            table.add_column(name, no_wrap=True)
        for row in found:
            bus = escape(row.bus) if row.bus is not None else _UNKNOWN
            table.add_row(bus, str(row.pending), str(row.bytes), _when(row.oldest))
        console.print(table)
        mine = destination(settings.bus.url)
        if any(row.bus != mine and row.pending for row in found):
            console.print(
                "messages wait for other buses than the configured one: each is forwarded "
                "only to its own bus (`stalwart outbox flush` with that bus's URL); "
                "`--adopt` sends those whose bus was not recorded to the configured bus",
                highlight=False,
            )
        if found[0].quarantined:
            console.print(
                f"{found[0].quarantined} spooled message(s) could not be decoded and were set "
                f"aside, not sent: they are in the quarantine table of {escape(found[0].path)} "
                "(sqlite3 that file to inspect them)",
                highlight=False,
            )

    @outbox.command("flush")
    def flush(
        timeout: Annotated[
            float,
            typer.Option(
                min=0, max=86_400, help="Give up after this many seconds if the bus stays away."
            ),
        ] = 60.0,
        adopt: Annotated[
            bool,
            typer.Option(
                "--adopt",
                help="Also forward, to this bus, messages whose bus was not recorded "
                "(spooled by an older stalwart).",
            ),
        ] = False,
        config: ConfigOption = None,
    ) -> None:
        """Forward everything the outbox holds for the configured bus now, in order.

        Messages spooled for another bus stay for it.

        Example: stalwart outbox flush --timeout 120
        """
        settings = settings_from(config)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            forwarded = run(_flush(settings, timeout, adopt, progress))
        console.print(
            f"forwarded {forwarded} message(s) to {escape(redact_url(settings.bus.url))}",
            highlight=False,
        )
