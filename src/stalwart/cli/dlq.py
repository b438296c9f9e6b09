"""``stalwart dlq``: inspect, retry and purge dead letters."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stalwart.bus import DeadLetter, Transport
from stalwart.cli._bus import connected
from stalwart.cli._columns import Col, WideOption, fit_table, print_table, width_for
from stalwart.cli._common import ConfigOption, console, run, settings_from
from stalwart.config import Settings
from stalwart.errors import StalwartError

__all__ = ["register"]

ServiceOption = Annotated[
    str | None, typer.Option("--service", "-s", help="Only this service's dead letters.")
]


async def _queues(transport: Transport, service: str | None) -> list[str]:
    names = await transport.queues()
    if service is None:
        return names
    if service not in names:
        raise StalwartError(
            f"no queue for service {service!r}; known: {', '.join(names) or 'none'}"
        )
    return [service]


async def _list(settings: Settings, service: str | None, limit: int) -> list[DeadLetter]:
    async with connected(settings, reading=True) as transport:
        letters: list[DeadLetter] = []
        for queue in await _queues(transport, service):
            letters.extend(await transport.dead_letters(queue, limit))
        return letters


async def _act(settings: Settings, service: str | None, keys: list[str], purge: bool) -> int:
    async with connected(settings, reading=True) as transport:
        total = 0
        for queue in await _queues(transport, service):
            chosen = keys or None
            if purge:
                total += await transport.purge_dead(queue, chosen)
            else:
                total += await transport.requeue_dead(queue, chosen)
        return total


def _key_of(letter: DeadLetter) -> str:
    return letter.key or (letter.envelope.id if letter.envelope else "")


def _as_json(letter: DeadLetter) -> dict[str, Any]:
    """The envelope (token masked), or its raw text if undecodable, and why it died."""
    data: dict[str, Any] = (
        letter.envelope.redacted()
        if letter.envelope
        else {"raw": letter.raw.decode(errors="replace")}
    )
    data["_dead"] = {
        "key": _key_of(letter),
        "queue": letter.queue,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "died_at": str(letter.died_at),
    }
    return data


_COLUMNS = (
    Col("key", whole=True),  # what `dlq show` and `dlq retry` take
    Col("service", min_width=8),
    Col("topic", drop=2, min_width=12),
    Col("kind", drop=3, min_width=8),
    Col("attempts", drop=4, whole=True, justify="right"),
    Col("died", drop=1, whole=True),
    Col("reason", wrap=True, min_width=16),
)


def _table(letters: list[DeadLetter], width: int | None) -> Table:
    rows = []
    for letter in letters:
        env = letter.envelope
        rows.append(
            [
                escape(_key_of(letter)),
                escape(letter.queue),
                escape(env.topic) if env else "?",
                escape(env.kind) if env else "?",
                str(letter.attempts),
                f"{letter.died_at:%Y-%m-%d %H:%M:%S}",
                escape(letter.reason),
            ]
        )
    return fit_table(_COLUMNS, rows, width)


def register(app: typer.Typer) -> None:
    dlq = typer.Typer(
        help="Dead letters: list, show, retry, purge.\n\nExample: stalwart dlq list",
        no_args_is_help=True,
    )
    app.add_typer(dlq, name="dlq")

    @dlq.command("list")
    def list_(
        service: ServiceOption = None,
        limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
        as_json: Annotated[
            bool, typer.Option("--json", help="A JSON array, each as `dlq show` prints it.")
        ] = False,
        wide: WideOption = False,
        config: ConfigOption = None,
    ) -> None:
        """List dead letters with their reasons.

        Example: stalwart dlq list --service qa

        Example: stalwart dlq list --json | jq '.[]._dead.reason'
        """
        letters = run(_list(settings_from(config), service, limit))
        if as_json:
            console.print_json(json.dumps([_as_json(letter) for letter in letters], default=str))
        elif letters:
            print_table(_table(letters, width_for(wide)))
        else:
            console.print("no dead letters")

    @dlq.command()
    def show(key: str, service: ServiceOption = None, config: ConfigOption = None) -> None:
        """Show one dead letter whole (token masked).

        Example: stalwart dlq show 0193a1c2-... --service qa
        """
        for letter in run(_list(settings_from(config), service, 10_000)):
            if key in (_key_of(letter), letter.envelope.id if letter.envelope else None):
                console.print_json(json.dumps(_as_json(letter), default=str))
                return
        raise StalwartError(f"no dead letter {key!r}; see `stalwart dlq list`")

    @dlq.command()
    def retry(
        keys: Annotated[list[str] | None, typer.Argument(help="Keys (default: all).")] = None,
        service: ServiceOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Put dead letters back on their queue for another try.

        Example: stalwart dlq retry --service qa
        """
        count = run(_act(settings_from(config), service, keys or [], purge=False))
        console.print(f"requeued {count} dead letter(s)")

    @dlq.command()
    def purge(
        keys: Annotated[list[str] | None, typer.Argument(help="Keys (default: all).")] = None,
        service: ServiceOption = None,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
        config: ConfigOption = None,
    ) -> None:
        """Delete dead letters for good.

        Example: stalwart dlq purge --service qa --yes
        """
        settings = settings_from(config)
        if not yes:
            typer.confirm("delete these dead letters for good?", abort=True)
        count = run(_act(settings, service, keys or [], purge=True))
        console.print(f"purged {count} dead letter(s)")
