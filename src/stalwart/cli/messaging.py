"""``stalwart send`` and ``stalwart tail``: put a message on the bus, watch it flow."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from stalwart.bus import QueueSpec
from stalwart.cli._bus import connected
from stalwart.cli._common import ConfigOption, console, run, settings_from
from stalwart.cli._params import MAX_COUNT, duration
from stalwart.config import Settings
from stalwart.envelope import DeliveryState, Envelope, default_sender
from stalwart.errors import DecodeError
from stalwart.messages import LIFECYCLE_TOPIC

__all__ = ["register"]

# Characters of an id that `tail` prints: its random end, which `show` accepts.
SHORT_ID = 8

_STATE_STYLE = {
    DeliveryState.CONSUMED: "green",
    DeliveryState.FAILED: "yellow",
    DeliveryState.DEAD: "bold red",
    DeliveryState.REJECTED: "red",
    DeliveryState.EXPIRED: "magenta",
}


def _read_body(data: str | None, file: Path | None) -> Any:
    if (data is None) == (file is None):
        raise DecodeError("give exactly one of --json DATA or --file F")
    text = data if data is not None else Path(file or "").read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"body is not valid JSON ({exc}); quote it, e.g. --json '{{\"a\": 1}}'", text
        ) from None


async def _send(settings: Settings, envelope: Envelope) -> None:
    async with connected(settings) as transport:
        await transport.publish([envelope])


def _line(envelope: Envelope) -> str:
    """One line per message; lifecycle batches show their transitions."""
    stamp = f"{envelope.created_at:%H:%M:%S.%f}"[:-3]
    head = (
        f"[dim]{stamp}[/] {envelope.id[-SHORT_ID:]} "
        f"[cyan]{escape(envelope.topic)}[/] [bold]{escape(envelope.kind)}[/]"
    )
    if envelope.topic == LIFECYCLE_TOPIC and isinstance(envelope.body, dict):
        parts = []
        for t in envelope.body.get("transitions", [])[:6]:
            state = DeliveryState(t["state"])
            style = _STATE_STYLE.get(state, "white")
            short = t["message_id"][-SHORT_ID:]
            parts.append(f"{short}@{escape(t['service'])}=[{style}]{state}[/]")
        more = len(envelope.body.get("transitions", [])) - len(parts)
        return f"{head} {' '.join(parts)}{f' +{more}' if more > 0 else ''}"
    body = json.dumps(envelope.body, separators=(",", ":"), default=str)
    if len(body) > 120:
        body = body[:117] + "..."
    return f"{head} [dim]from[/] {escape(envelope.sender)} {escape(body)}"


def _print(envelope: Envelope, as_json: bool) -> None:
    if as_json:  # one object per line, for jq and line-oriented tools
        sys.stdout.write(json.dumps(envelope.redacted(), separators=(",", ":")) + "\n")
        sys.stdout.flush()
    else:
        console.print(_line(envelope), highlight=False, soft_wrap=True)


async def _tail(
    settings: Settings, patterns: list[str], count: int | None, as_json: bool, system: bool
) -> int:
    spec = QueueSpec(
        name=f"tail-{secrets.token_hex(4)}",
        patterns=tuple(patterns),
        ephemeral=True,
        max_attempts=1,
    )
    seen = 0
    # SIGTERM ends the tail like Ctrl-C: its ephemeral queue is removed on the way out.
    main = asyncio.current_task()
    if main is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    async with connected(settings, reading=True) as transport:
        await transport.declare(spec)
        deliveries = transport.consume(spec.name, 256)
        try:
            async for delivery in deliveries:
                envelope = delivery.envelope
                await delivery.ack()
                if envelope is None:
                    console.print(f"[red]undecodable message:[/] {escape(str(delivery.error))}")
                elif system or not envelope.topic.startswith("sys."):
                    _print(envelope, as_json)
                else:
                    continue
                seen += 1
                if count is not None and seen >= count:
                    break
        finally:
            await deliveries.aclose()  # type: ignore[attr-defined]
    return seen


def register(app: typer.Typer) -> None:
    @app.command()
    def send(
        topic: Annotated[str, typer.Argument(help="Dotted topic, e.g. pipeline.process.jao")],
        kind: Annotated[
            str, typer.Option("--kind", "-k", help="The body's type name.")
        ] = "Message",
        data: Annotated[str | None, typer.Option("--json", help="Body as JSON text.")] = None,
        file: Annotated[
            Path | None,
            typer.Option(
                "--file", "-f", exists=True, dir_okay=False, help="Body from a JSON file."
            ),
        ] = None,
        ttl: Annotated[
            float | None,
            typer.Option(
                parser=duration,
                metavar="DURATION",
                help="Lifetime before it expires: 90, 30s, 15m, 1h.",
            ),
        ] = None,
        reply_to: Annotated[str | None, typer.Option(help="Topic for the reply.")] = None,
        correlation: Annotated[str | None, typer.Option(help="Correlation id.")] = None,
        token: Annotated[
            str | None,
            typer.Option(
                envvar="STALWART_TOKEN", show_default=False, help="Signed token to attach."
            ),
        ] = None,
        config: ConfigOption = None,
    ) -> None:
        """Publish one message; returns once it is durable and prints its id.

        Example: stalwart send pipeline.process.jao --kind ProcessRequest --json '{"ous": "uid://A001/X1"}'
        """
        settings = settings_from(config)
        envelope = Envelope.new(
            topic,
            _read_body(data, file),
            kind=kind,
            ttl=ttl,
            sender=default_sender("cli", settings.site),
            reply_to=reply_to,
            correlation_id=correlation,
            token=token,
        )
        run(_send(settings, envelope))
        console.print(envelope.id, highlight=False)

    @app.command()
    def tail(
        patterns: Annotated[
            list[str] | None, typer.Argument(help="Topic patterns (default #).")
        ] = None,
        count: Annotated[
            int | None, typer.Option("--count", "-n", min=1, max=MAX_COUNT, help="Stop after N.")
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Whole envelopes, one JSON object per line.")
        ] = False,
        system: Annotated[
            bool | None,
            typer.Option(
                "--system/--no-system",
                help="Show sys.* traffic (default: only when PATTERNS are given).",
                show_default=False,
            ),
        ] = None,
        config: ConfigOption = None,
    ) -> None:
        """Follow messages live, one line each (tokens are never shown).

        Each line starts with the time and the message's short id (`stalwart show`
        takes it). Heartbeats, life-cycle batches and other sys.* messages are
        hidden unless --system, or unless topic patterns are given.

        Example: stalwart tail 'pipeline.#' 'sys.report.*'

        Example: stalwart tail --json | jq .topic
        """
        settings = settings_from(config)
        show_system = system if system is not None else bool(patterns)
        with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
            run(_tail(settings, patterns or ["#"], count, as_json, show_system))
