"""What every CLI command shares: settings, the event loop, errors on one line."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from stalwart.config import Settings, load_settings
from stalwart.errors import StalwartError

__all__ = [
    "ConfigOption",
    "age",
    "console",
    "err_console",
    "fail",
    "handle_errors",
    "run",
    "settings_from",
]

P = ParamSpec("P")
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
    _configure_logging(settings)
    return settings


def _configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    fmt = (
        '{"t":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}'
        if settings.log_format == "json"
        else "%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
    # Client libraries log every failed connect; ours says it once, with advice.
    for noisy in ("aiormq", "aio_pika", "alembic"):
        logging.getLogger(noisy).setLevel(max(level, logging.CRITICAL))


def age(seconds: float) -> str:
    """A duration as a person reads it in a table: 4.2s, 17m, 3.5h."""
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` on one line to stderr and return an Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Turn a StalwartError into one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except StalwartError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine as the whole of a CLI command."""
    return asyncio.run(coro)
