"""``stalwart outbox``: what waits in the local spool, and forwarding it now."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stalwart.bus import open_transport, redact_url
from stalwart.bus.outbox import OutboxTransport, SpoolStatus, spool_status
from stalwart.cli._common import ConfigOption, console, handle_errors, run, settings_from
from stalwart.config import Settings
from stalwart.errors import ConfigError

__all__ = ["register"]


def _status(settings: Settings) -> SpoolStatus:
    path = Path(settings.bus.outbox)
    if not path.exists():
        return SpoolStatus(str(path), 0, 0, None)
    return spool_status(path)


async def _flush(settings: Settings, timeout: float, progress: Progress) -> int:
    bus = settings.bus
    if bus.url.partition("://")[0].lower() == "sqlite":
        raise ConfigError(
            f"the bus {redact_url(bus.url)} is embedded and has no outbox; set [bus] url to a "
            "network broker (amqp://...) to use one"
        )
    inner = open_transport(
        bus.url,
        max_message_size=bus.max_message_size,
        exchange=bus.exchange,
        queue_type=bus.queue_type,
    )
    outbox = OutboxTransport(inner, bus.outbox, durability=bus.durability, forward=False)
    await outbox.start()
    try:
        task = progress.add_task("forwarding", total=await outbox.pending())

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return await outbox.flush(timeout, advance)
    finally:
        await outbox.close()


def register(app: typer.Typer) -> None:
    outbox = typer.Typer(
        help="The local store-and-forward spool.\n\nExample: stalwart outbox status",
        no_args_is_help=True,
    )
    app.add_typer(outbox, name="outbox")

    @outbox.command("status")
    @handle_errors
    def status(config: ConfigOption = None) -> None:
        """Show how many messages wait in the outbox, their size and the oldest.

        Example: stalwart outbox status -c stalwart.toml
        """
        found = _status(settings_from(config))
        oldest = (
            datetime.fromtimestamp(found.oldest, UTC).isoformat(timespec="seconds")
            if found.oldest is not None
            else "-"
        )
        table = Table("spool", "pending", "bytes", "oldest (UTC)", "quarantined")
        table.add_row(
            found.path, str(found.pending), str(found.bytes), oldest, str(found.quarantined)
        )
        console.print(table)
        if found.quarantined:
            console.print(
                f"{found.quarantined} spooled message(s) could not be decoded and were set "
                f"aside, not sent: they are in the quarantine table of {found.path} "
                "(sqlite3 that file to inspect them)"
            )

    @outbox.command("flush")
    @handle_errors
    def flush(
        timeout: Annotated[
            float, typer.Option(help="Give up after this many seconds if the broker stays away.")
        ] = 60.0,
        config: ConfigOption = None,
    ) -> None:
        """Forward everything in the outbox to the broker now, in order.

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
            forwarded = run(_flush(settings, timeout, progress))
        console.print(f"forwarded {forwarded} message(s) to {redact_url(settings.bus.url)}")
