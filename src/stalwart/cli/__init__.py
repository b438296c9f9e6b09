"""The ``stalwart`` command. Each command group lives in its own module; this
module only knows their names and one-line help, from :data:`COMMANDS`.

A command's module is imported when that command runs (or shows its own
help), never before: ``stalwart --help`` imports no command module, a batch
tool calling ``stalwart report`` does not pay for the dashboard's web stack
or the store, and a service process started with ``stalwart run`` neither.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Final, NamedTuple

import typer
import typer.core
import typer.main

from stalwart.errors import StalwartError

__all__ = ["COMMANDS", "Entry", "build_app", "lazy_app", "main"]

_HELP: Final = (
    "A resilient message-passing backbone for distributed scientific data processing."
    "\n\nExample: stalwart up --demo"
)


class Entry(NamedTuple):
    """Where a command is registered, and its help's opening words for the command list."""

    module: str
    summary: str


# command name -> module of stalwart.cli that registers it, and the start of its help
COMMANDS: Final = {
    "up": Entry("up", "Run the whole system on this host"),
    "send": Entry("messaging", "Publish one message; returns once it is durable"),
    "tail": Entry("messaging", "Follow messages live, one line each"),
    "report": Entry("report", "Publish a report on sys.report.<level>"),
    "run": Entry("services", "Run a service until SIGTERM/SIGINT, then stop gracefully."),
    "status": Entry("status", "Services and instances (up / late / down from heartbeats)"),
    "dlq": Entry("dlq", "Dead letters: list, show, retry, purge."),
    "token": Entry("token", "Signed tokens (JWT)."),
    "watchdog": Entry("watchdog", "Supervise programs: restart crashed, hung, slow"),
    "beat": Entry("watchdog", "Tell the watchdog this program is alive"),
    "dashboard": Entry("dashboard", "The web dashboard"),
    "ingest": Entry("integrity", "Create each file's manifest and parity"),
    "verify": Entry("integrity", "Check files against their manifests"),
    "transfer": Entry("integrity", "Copy a file, verify it on the destination's disk"),
    "transfer-service": Entry("integrity", "Serve verified-transfer requests for a site"),
    "scrub": Entry("integrity", "Re-verify every replica of a site"),
    "catalog": Entry("integrity", "Query the integrity catalog"),
    "messages": Entry("store", "List stored messages, newest first"),
    "show": Entry("store", "Show one message"),
    "reports": Entry("store", "List reports from batch tools and services"),
    "persist": Entry("store", "Run the persistence subscriber"),
    "db": Entry("store", "The message store's schema."),
    "store": Entry("store", "Message store upkeep."),
    "outbox": Entry("outbox", "The local store-and-forward spool."),
    "ha": Entry("ha", "High availability: leases, checkpoints, health monitors."),
    "dev": Entry("dev", "Local stand-ins for production infrastructure."),
}


def build_app(modules: Iterable[str] | None = None) -> typer.Typer:
    """The Typer app with the commands of ``modules`` (default: all of them), eagerly."""
    app = _root_app(None)
    wanted = modules if modules is not None else (entry.module for entry in COMMANDS.values())
    for module in dict.fromkeys(wanted):
        importlib.import_module(f"stalwart.cli.{module}").register(app)
    return app


class _Commands(Mapping[str, Any]):
    """Every command by name; a command's module is imported on first lookup."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            group = typer.main.get_group(build_app([COMMANDS[name].module]))
            self._loaded[name] = group.commands[name]
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


class _LazyGroup(typer.core.TyperGroup):
    """The root group: lists commands from the table, loads only the one invoked."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands()  # type: ignore[assignment]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # Plain formatting: rich's would look up (so import) every command for its panel.
        super(typer.core.TyperGroup, self).format_help(ctx, formatter)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry.summary) for name, entry in COMMANDS.items()])


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"stalwart {version('stalwart')}")
        raise typer.Exit()


def lazy_app() -> typer.Typer:
    """The ``stalwart`` command as run from the shell: every command, loaded on use."""
    return _root_app(_LazyGroup)


def _root_app(cls: type[typer.core.TyperGroup] | None) -> typer.Typer:
    app = typer.Typer(
        name="stalwart",
        cls=cls,
        help=_HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        version: Annotated[
            bool,
            typer.Option(
                "--version",
                help="Print the version and exit.",
                is_eager=True,
                callback=_print_version,
            ),
        ] = False,
    ) -> None:
        """stalwart: every command has --help with an example."""

    return app


def main(argv: list[str] | None = None) -> None:
    try:
        lazy_app()(argv, prog_name="stalwart")
    except (StalwartError, OSError) as exc:  # from a command without handle_errors: one line
        from stalwart.cli._common import error_exit

        raise SystemExit(error_exit(exc).exit_code) from None
