"""``stalwart up``: the whole system on this host, supervised, in one command."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.text import Text

from stalwart.bus import Transport, open_bus, redact_url
from stalwart.cli._common import ConfigOption, console, run, settings_from
from stalwart.cli._dashboard_watch import DashboardWatch
from stalwart.cli._params import MAX_COUNT
from stalwart.cli._stack import stack
from stalwart.config import Settings
from stalwart.errors import BrokerUnavailable, ConfigError, StalwartError
from stalwart.watchdog import Watchdog

__all__ = ["register"]

_DASHBOARD_START = 30.0  # seconds the banner waits for the dashboard to listen


async def _wait_for_queues(transport: Transport, queues: set[str], timeout: float) -> None:
    """Units sent before every service declared its queue would be routed nowhere.

    A broker that is down for now is waited for as well: the services wait
    for it too, and `up` must not stop them all because it was away at start.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            missing, why = queues - set(await transport.queues()), ""
        except BrokerUnavailable as exc:
            missing, why = queues, f" (the bus: {exc})"
        if not missing:
            return
        if time.monotonic() > deadline:
            raise StalwartError(
                f"service(s) {', '.join(sorted(missing))} did not start within "
                f"{timeout:.0f}s{why}; see `stalwart status` and the log above"
            )
        await asyncio.sleep(0.5)


async def _feed(settings: Settings, units: int | None, interval: float) -> None:
    from stalwart.demo import services  # built on demand: `up` without --demo needs none
    from stalwart.demo.source import feed

    transport = open_bus(settings)
    await transport.start()
    try:
        await _wait_for_queues(transport, {service.name for service in services.ALL}, 300.0)
        await feed(transport, units=units, interval=interval, site=settings.site)
    finally:
        await transport.close()


def _banner(settings: Settings, programs: int, dashboard: str | None) -> Panel:
    lines = [
        f"bus    {redact_url(settings.bus.url)}",
        f"store  {redact_url(settings.store.url)}",
        f"{programs} programs supervised by the watchdog",
    ]
    if dashboard is not None:
        lines.append(dashboard)
    lines += [
        "",
        "watch:  stalwart tail        status:  stalwart status",
        "stop:   Ctrl-C (every part stops gracefully)",
    ]
    return Panel(Text("\n".join(lines)), title="stalwart up", expand=False)


async def _up(
    settings: Settings, demo: bool, dashboard: bool, units: int | None, interval: float
) -> None:
    table = stack(settings, demo_workflow=demo, dashboard=dashboard)
    watchdog = Watchdog(
        table,
        socket_path=Path(settings.home) / "watchdog.sock",
        bus=lambda: open_bus(settings),
        store_url=settings.store.url,
        site=settings.site,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watch = DashboardWatch(Path(settings.home)) if dashboard else None
    if watch is not None:
        watchdog.add_listener(watch.on_event)
    await watchdog.start()
    line = await watch.line(_DASHBOARD_START, stop) if watch is not None else None
    console.print(_banner(settings, len(table.programs), line))
    feeder = asyncio.create_task(_feed(settings, units, interval)) if demo else None
    try:
        if feeder is not None:
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, feeder}, return_when=asyncio.FIRST_COMPLETED)
            if feeder.done():
                feeder.result()  # a feeder that failed stops `up` with its error
        await stop.wait()
    finally:
        console.print("stopping: every part finishes its in-flight work")
        if feeder is not None:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
        await watchdog.close()


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        demo: Annotated[
            bool,
            typer.Option(
                "--demo",
                help="Run the demonstration workflow: units of work flowing across four sites.",
            ),
        ] = False,
        dashboard: Annotated[bool, typer.Option(help="Serve the dashboard.")] = True,
        units: Annotated[
            int | None,
            typer.Option(min=1, max=MAX_COUNT, help="Demo: stop feeding after N units."),
        ] = None,
        interval: Annotated[
            float, typer.Option(min=0.0, max=86_400.0, help="Demo: seconds between units.")
        ] = 2.0,
        config: ConfigOption = None,
        chaos: Annotated[
            bool,
            typer.Option(
                "--chaos",
                help="With --demo: run `stalwart chaos` instead (a 3-minute seeded fault "
                "campaign against a private demo, report in ./chaos-report).",
            ),
        ] = False,
    ) -> None:
        """Run the whole system on this host: persistence, dashboard and services,
        each a process under the watchdog. Embedded defaults under ./.stalwart/.

        Example: stalwart up --demo
        """
        if chaos:
            if not demo:
                raise ConfigError("--chaos strikes the demo: use `stalwart up --demo --chaos`")
            from stalwart.cli.chaos import campaign

            campaign(None, 180.0, Path("chaos-report"), max(interval, 0.1))
            return
        settings = settings_from(config)
        Path(settings.home).mkdir(parents=True, exist_ok=True)
        run(_up(settings, demo, dashboard, units, interval))
