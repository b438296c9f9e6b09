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
from rich.text import Text

from stalwart.config import Settings, load_settings
from stalwart.errors import EX_CONFIG, ConfigError, StalwartError
from stalwart.redact import redact_url

__all__ = [
    "ConfigOption",
    "age",
    "console",
    "err_console",
    "fail",
    "handle_errors",
    "run",
    "say",
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


class _Redacting(logging.Formatter):
    """Log lines with every URL's password masked, whichever library wrote them."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_url(super().format(record))


def _configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    fmt = (
        '{"t":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}'
        if settings.log_format == "json"
        else "%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Redacting(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)
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


def handle_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Turn a StalwartError, or a file or network error the command did not expect,
    into one line on stderr and exit status 1 (78 for a ConfigError)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            raise fail(str(exc), EX_CONFIG) from None
        except StalwartError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise fail(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine as the whole of a CLI command."""
    return asyncio.run(coro)
