"""``stalwart demo retention`` and ``stalwart demo batch``: the demonstration's own programs.

``stalwart up --demo`` starts them (the sweeper under the watchdog, the batch
step once per unit from a pipeline service); they are commands like every
other process, so they read stalwart.toml and log the same way. Each imports
its part of :mod:`stalwart.demo` when it runs: the batch step, started for
every unit, does not load the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stalwart.cli._common import ConfigOption, run, settings_from
from stalwart.cli._params import MAX_COUNT, nonblank

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="The demonstration's programs, as `stalwart up --demo` runs them.\n\n"
        "Example: stalwart demo retention -c stalwart.toml",
        no_args_is_help=True,
    )
    app.add_typer(group, name="demo")

    @group.command("retention")
    def retention(config: ConfigOption = None) -> None:
        """Delete delivered demo products and prune old records until SIGTERM/SIGINT.

        The [demo] table of stalwart.toml sets how long they are kept; a bad
        table exits 78, which the watchdog does not restart.

        Example: stalwart demo retention -c stalwart.toml
        """
        from stalwart.demo.retention import DemoSettings, sweep_until_stopped

        settings = settings_from(config)
        run(sweep_until_stopped(settings, settings.section("demo", DemoSettings)))

    @group.command("batch")
    def batch(
        ous: Annotated[str, typer.Argument(parser=nonblank, help="The unit's id.")],
        site: Annotated[str, typer.Argument(parser=nonblank, help="The processing site.")],
        outdir: Annotated[Path, typer.Argument(help="Where the product is written.")],
        size_kib: Annotated[
            int, typer.Option("--size-kib", min=1, max=2**20, help="The product's size (to 1 GiB).")
        ] = 64,
        attempt: Annotated[
            int, typer.Option("--attempt", min=1, max=MAX_COUNT, help="The delivery attempt.")
        ] = 1,
        config: ConfigOption = None,
    ) -> None:
        """Process one unit: write its product, print its path and digest.

        Exits 3 on a simulated processing problem (no product is left behind).

        Example: stalwart demo batch uid://A001/X1/Y1 eu /tmp/products --size-kib 64 --attempt 2
        """
        from stalwart.demo.batch import process

        settings_from(config)  # a broken stalwart.toml stops it (78), as every command
        product = process(ous, site, outdir, size_kib, attempt)
        if product is None:
            typer.echo(f"calibration diverged for {ous}", err=True)
            raise typer.Exit(3)
        typer.echo(f"{product.path} {product.digest}")
