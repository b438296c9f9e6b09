"""What every CLI command shares: settings, the event loop, errors on one line."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from stalwart.config import Settings, load_settings
from stalwart.errors import StalwartError, exit_status
from stalwart.logs import configure_logging
from stalwart.redact import redact_url

__all__ = [
    "ConfigOption",
    "age",
    "console",
    "err_console",
    "error_exit",
    "fail",
    "run",
    "say",
    "settings_from",
]

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="STALWART_CONFIG",
        help="stalwart.toml to read (default: ./stalwart.toml if present).",
        show_default=False,
    ),
]


def settings_from(config: Path | None, **overrides: Any) -> Settings:
    """Load settings and configure logging for a CLI process (the library never does)."""
    settings = load_settings(config, overrides=overrides)
    configure_logging(settings)
    return settings


def age(seconds: float) -> str:
    """A duration as a person reads it in a table: 4.2s, 17m, 3.5h."""
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def say(message: str, *, err: bool = False) -> None:
    """Print ``message`` as it is: its ``[bus]`` or ``[dashboard.users]`` is text, not markup."""
    (err_console if err else console).print(
        redact_url(message), markup=False, highlight=False, soft_wrap=True
    )


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` on one line to stderr and return an Exit to raise."""
    line = Text.assemble(("error:", "bold red"), " ", redact_url(message))
    err_console.print(line, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def error_exit(exc: StalwartError | OSError) -> typer.Exit:
    """``exc`` as one line on stderr, and the Exit to raise: 1, or 78 for a ConfigError.

    A StalwartError says what to do; a file or network error the command did
    not expect says at least what and where.
    """
    if isinstance(exc, StalwartError):
        return fail(str(exc), exit_status(exc))
    where = f"{exc.filename}: " if exc.filename else ""
    return fail(f"{where}{exc.strerror or exc or type(exc).__name__}")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine as the whole of a CLI command."""
    return asyncio.run(coro)
