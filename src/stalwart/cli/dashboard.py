"""``stalwart dashboard`` (serve the web dashboard) and ``stalwart dashboard hash-password``."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from stalwart.cli._common import ConfigOption, run, say, settings_from
from stalwart.config import Settings
from stalwart.dashboard import DEFAULT_BIND, serve_dashboard
from stalwart.dashboard.auth import hash_password

__all__ = ["register"]

_group = typer.Typer(
    name="dashboard",
    help="The web dashboard: what is running where and what is flowing.\n\n"
    "Example: stalwart dashboard --bind 127.0.0.1:8321",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _ready(url: str, url_file: Path | None) -> None:
    say(f"dashboard on {url} (Ctrl-C to stop)")
    if url_file is not None:  # for `stalwart up`, whose banner shows the address bound
        partial = url_file.with_name(url_file.name + ".tmp")
        partial.write_text(url + "\n", encoding="utf-8")
        partial.replace(url_file)


async def _serve(settings: Settings, bind: str | None, url_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve_dashboard(settings, bind, stop, on_ready=lambda url: _ready(url, url_file))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


@_group.callback()
def dashboard(
    ctx: typer.Context,
    bind: Annotated[
        str | None,
        typer.Option(
            "--bind",
            "-b",
            help="host:port to listen on (default: bind in the dashboard table, else "
            f"{DEFAULT_BIND}). Beyond 127.0.0.1 every page needs a login.",
            show_default=False,
        ),
    ] = None,
    url_file: Annotated[
        Path | None,
        typer.Option("--url-file", hidden=True, help="Write the URL bound to this file."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the dashboard until Ctrl-C or SIGTERM.

    Exits 78 (configuration error) when it cannot listen, e.g. the port is taken.

    Example: stalwart dashboard --bind 127.0.0.1:8321
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_from(config)
    run(_serve(settings, bind, url_file))


@_group.command("hash-password")
def hash_password_command(
    user: Annotated[str, typer.Option("--user", "-u", help="User name for the TOML line.")] = "ops",
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the password from standard input.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Print a password hash for the dashboard.users table (never store plain passwords).

    Example: stalwart dashboard hash-password --user ops
    """
    settings_from(config)  # hashing needs no settings, but a broken file is worth knowing
    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    encoded = hash_password(password)
    typer.echo("Add to stalwart.toml:", err=True)
    typer.echo(f'[dashboard.users]\n{user} = "{encoded}"')


def register(app: typer.Typer) -> None:
    app.add_typer(_group)
