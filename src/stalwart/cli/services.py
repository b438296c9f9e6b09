"""``stalwart run``: serve a service, as competing instances or as one HA replica."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from stalwart.cli._common import ConfigOption, run, settings_from
from stalwart.config import Settings
from stalwart.service import Service, load_service, serve_many

__all__ = ["register"]


async def _serve(service: Service, instances: int, settings: Settings) -> None:
    await serve_many([service] * instances, settings, asyncio.Event())


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_service(
        target: Annotated[str, typer.Argument(help="MODULE:SERVICE, e.g. mypkg.qa:service")],
        instances: Annotated[
            int,
            typer.Option(
                "--instances",
                "-n",
                min=1,
                max=1000,
                help="Instances competing for the queue in this process.",
            ),
        ] = 1,
        ha: Annotated[
            bool,
            typer.Option(
                "--ha",
                help="Run as one HA replica: active while it holds the service's lease, "
                "standby otherwise; failover from checkpoints.",
            ),
        ] = False,
        config: ConfigOption = None,
    ) -> None:
        """Run a service until SIGTERM/SIGINT, then stop gracefully.

        Without --ha, N instances compete for the service's queue in this process.
        With --ha, this process is one replica: run it two or more times (a watchdog
        program with replicas = 2, or systemd units) and one is active at a time.

        Example: stalwart run stalwart.demo.services:qa --instances 4
        """
        if ha and instances != 1:
            raise typer.BadParameter(
                "an HA replica is one process: drop --instances and run the command once "
                "per replica (a watchdog program with replicas = N does that)",
                param_hint="--instances",
            )
        settings = settings_from(config)
        if ha:
            from stalwart.ha import run_ha  # leases and checkpoints: only an HA replica needs them

            run(run_ha(target, settings))
        else:
            run(_serve(load_service(target), instances, settings))
