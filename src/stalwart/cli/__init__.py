"""The ``stalwart`` command. Each command group lives in its own module and
registers itself on the one Typer application built here.

Only the module of the command being run is imported: a service process
started with ``stalwart run`` does not pay for the dashboard's web stack, and
``--help`` on the whole command imports everything.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from typing import Final

import typer

__all__ = ["COMMANDS", "build_app", "main"]

# command name -> module of stalwart.cli that registers it
COMMANDS: Final = {
    "up": "up",
    "send": "messaging",
    "tail": "messaging",
    "report": "report",
    "run": "services",
    "status": "status",
    "dlq": "dlq",
    "token": "token",
    "watchdog": "watchdog",
    "beat": "watchdog",
    "dashboard": "dashboard",
    "ingest": "integrity",
    "verify": "integrity",
    "transfer": "integrity",
    "transfer-service": "integrity",
    "scrub": "integrity",
    "catalog": "integrity",
    "messages": "store",
    "show": "store",
    "reports": "store",
    "persist": "store",
    "db": "store",
    "store": "store",
    "outbox": "outbox",
    "ha": "ha",
}


def build_app(modules: Iterable[str] | None = None) -> typer.Typer:
    """The Typer app with the commands of ``modules`` (default: all of them)."""
    app = typer.Typer(
        name="stalwart",
        help="A resilient message-passing backbone for distributed scientific data "
        "processing.\n\nExample: stalwart up --demo",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root() -> None:
        """stalwart: every command has --help with an example."""

    for module in dict.fromkeys(modules if modules is not None else COMMANDS.values()):
        importlib.import_module(f"stalwart.cli.{module}").register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), None)
    module = COMMANDS.get(command or "")
    build_app([module] if module else None)(args, prog_name="stalwart")
