"""``stalwart report``: errors and information from batch tools onto the bus."""

from __future__ import annotations

from typing import Annotated

import typer

from stalwart.cli._common import ConfigOption, run, say, settings_from
from stalwart.cli._params import nonblank
from stalwart.errors import ConfigError
from stalwart.messages import ReportLevel
from stalwart.reporting import report

__all__ = ["register"]


def _refs(pairs: list[str]) -> dict[str, str]:
    refs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--ref {pair!r} is not KEY=VALUE, e.g. --ref ous=uid://A001/X1")
        refs[key] = value
    return refs


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_command(
        text: Annotated[str, typer.Argument(parser=nonblank, help="What happened, in one line.")],
        level: Annotated[ReportLevel, typer.Option("--level", "-l")] = ReportLevel.INFO,
        source: Annotated[
            str, typer.Option("--source", "-s", parser=nonblank, help="Reporting tool.")
        ] = "batch",
        ref: Annotated[list[str] | None, typer.Option("--ref", help="KEY=VALUE (repeat).")] = None,
        config: ConfigOption = None,
    ) -> None:
        """Publish a report on sys.report.<level>; spooled locally if the bus is away.

        Prints where the report went. Any program can call it, in any language.

        Example: stalwart report -l error -s pipeline --ref ous=uid://A1 'calibration diverged'
        """
        settings = settings_from(config)
        receipt = run(report(level, text, source=source, settings=settings, refs=_refs(ref or [])))
        say(str(receipt))
