"""The ``stalwart`` command. Each command group lives in its own module; this
module only knows their names, one-line help and tree, from :data:`COMMANDS`,
and turns every command's errors into one line and an exit status.

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
    """Where a command is registered, its help's opening words, and whether it is a
    group of subcommands that does nothing bare (listed apart in ``stalwart --help``)."""

    module: str
    summary: str
    group: bool = False


# The tree a newcomer can guess: what an operator types every day is a short
# verb at the top; each part's administration is a group named after the part
# (docs/architecture.md, "The command line").
# command name -> module of stalwart.cli that registers it, and the start of its help
COMMANDS: Final = {
    "up": Entry("up", "Run the whole system on this host"),
    "run": Entry("services", "Run a service until SIGTERM/SIGINT, then stop gracefully."),
    "status": Entry("status", "Services and instances (up / late / down from heartbeats)"),
    "send": Entry("messaging", "Publish one message; returns once it is durable"),
    "tail": Entry("messaging", "Follow messages live, one line each"),
    "report": Entry("report", "Publish a report on sys.report.<level>"),
    "messages": Entry("store", "List stored messages, newest first"),
    "show": Entry("store", "Show one message"),
    "reports": Entry("store", "List reports from batch tools and services"),
    "dashboard": Entry("dashboard", "The web dashboard"),
    "watchdog": Entry("watchdog", "Supervise programs: restart crashed, hung, slow"),
    "chaos": Entry("chaos", "Strike the demo with a seeded fault campaign, check invariants"),
    "dlq": Entry("dlq", "Dead letters: list, show, retry, purge.", group=True),
    "integrity": Entry(
        "integrity", "Data integrity: ingest, verify, transfer, serve, scrub, catalog.", group=True
    ),
    "store": Entry("store", "The message store: persist, upgrade, prune.", group=True),
    "outbox": Entry("outbox", "The local store-and-forward spool.", group=True),
    "ha": Entry("ha", "High availability: leases, checkpoints, health monitors.", group=True),
    "token": Entry("token", "Signed tokens (JWT).", group=True),
    "dev": Entry("dev", "Local stand-ins for production infrastructure.", group=True),
    "demo": Entry(
        "demo", "The demonstration's programs, as `stalwart up --demo` runs them.", group=True
    ),
}


def build_app(modules: Iterable[str] | None = None) -> typer.Typer:
    """The Typer app with the commands of ``modules`` (default: all of them), eagerly."""
    app = _root_app(_RootGroup)
    wanted = modules if modules is not None else (entry.module for entry in COMMANDS.values())
    for module in dict.fromkeys(wanted):
        importlib.import_module(f"stalwart.cli.{module}").register(app)
    return app


class _RootGroup(typer.core.TyperGroup):
    """The root group: handles every command's errors, in one place.

    A StalwartError or an OSError a command did not expect is one line on
    stderr and exit status 1 (78 for a ConfigError); Ctrl-C is exit status 130.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (StalwartError, OSError) as exc:
            from stalwart.cli._common import error_exit

            raise error_exit(exc) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


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


class _LazyGroup(_RootGroup):
    """The root as run from the shell: lists commands from the table, loads only the one invoked."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands()  # type: ignore[assignment]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # Plain formatting: rich's would look up (so import) every command for its panel.
        super(typer.core.TyperGroup, self).format_help(ctx, formatter)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        for title, group in (("Commands", False), ("Command groups", True)):
            with formatter.section(title):
                formatter.write_dl(
                    [(name, e.summary) for name, e in COMMANDS.items() if e.group is group]
                )


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"stalwart {version('stalwart')}")
        raise typer.Exit()


def lazy_app() -> typer.Typer:
    """The ``stalwart`` command as run from the shell: every command, loaded on use."""
    return _root_app(_LazyGroup)


def _root_app(cls: type[_RootGroup]) -> typer.Typer:
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
    lazy_app()(argv, prog_name="stalwart")
