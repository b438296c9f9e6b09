"""``stalwart run``: serve a service, as competing instances or as an HA group."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from stalwart.cli._common import ConfigOption, run, settings_from
from stalwart.config import Settings
from stalwart.ha import run_ha
from stalwart.service import Service, load_service, serve_many

__all__ = ["register"]


async def _serve(service: Service, instances: int, settings: Settings) -> None:
    await serve_many([service] * instances, settings, asyncio.Event())


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_service(
        target: Annotated[str, typer.Argument(help="MODULE:SERVICE, e.g. mypkg.qa:service")],
        replicas: Annotated[
            int | None,
            typer.Option(
                "--replicas",
                "--instances",
                "-n",
                min=1,
                max=1000,
                help="Instances (default 1; with --ha, [ha] replicas).",
            ),
        ] = None,
        ha: Annotated[
            bool,
            typer.Option(
                "--ha", help="One active replica, the others on standby; failover from checkpoints."
            ),
        ] = False,
        config: ConfigOption = None,
    ) -> None:
        """Run a service until SIGTERM/SIGINT, then stop gracefully.

        Without --ha, N instances compete for the service's queue in this process.
        With --ha, N replicas run as child processes, one active holding the lease.

        Example: stalwart run stalwart.demo.services:dispatcher --replicas 2 --ha
        """
        settings = settings_from(config)
        if ha:
            run(run_ha(target, settings, replicas))
        else:
            run(_serve(load_service(target), replicas or 1, settings))
