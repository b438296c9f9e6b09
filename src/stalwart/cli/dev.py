"""``stalwart dev cluster up|down|status|watch``: a 3-node RabbitMQ cluster on this host."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from stalwart.bus import open_bus
from stalwart.cli._common import ConfigOption, console, fail, run, say, settings_from
from stalwart.config import Settings
from stalwart.dev.rabbitmq import RabbitCluster
from stalwart.ha.queue_leaders import QueueLeaderWatch
from stalwart.service import EventPublisher

__all__ = ["register"]

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Where the cluster's files and state live (default: <stalwart home>/cluster).",
        show_default=False,
    ),
]


def _root(directory: Path | None, config: Path | None) -> Path:
    return directory if directory is not None else settings_from(config).home / "cluster"


def _found(root: Path) -> RabbitCluster:
    try:
        cluster = RabbitCluster.find(root)
    except FileNotFoundError as exc:
        raise fail(f"{exc}; install Debian's rabbitmq-server") from None
    if cluster is None:
        raise fail(f"no cluster under {root}; start one with `stalwart dev cluster up`")
    return cluster


async def _watch(cluster: RabbitCluster, settings: Settings, interval: float) -> None:
    bus = open_bus(settings, outbox=False)  # the watch publishes again what the bus refused
    await bus.start()
    try:
        events = EventPublisher(bus, sender="queue-leader-watch")
        watch = QueueLeaderWatch(cluster.leaders, events, interval=interval)
        await watch.run(asyncio.Event())  # until Ctrl-C
    finally:
        await bus.close()


def register(app: typer.Typer) -> None:
    dev = typer.Typer(
        help="Local stand-ins for production infrastructure.\n\nExample: stalwart dev cluster up",
        no_args_is_help=True,
    )
    cluster = typer.Typer(
        help="A 3-node RabbitMQ cluster on this host (Debian's rabbitmq-server).\n\n"
        "Example: stalwart dev cluster up",
        no_args_is_help=True,
    )
    dev.add_typer(cluster, name="cluster")
    app.add_typer(dev, name="dev")

    @cluster.command("up")
    def up(directory: DirOption = None, config: ConfigOption = None) -> None:
        """Start the cluster (created on first use) and print the bus url to use.

        Three nodes with their own loopback addresses, ports and data, joined,
        with users `stalwart` and `client` and the quorum-queue policy
        (docs/deploy.md). Running again starts nodes that are down.

        Example: stalwart dev cluster up && stalwart dev cluster status
        """
        root = _root(directory, config)
        try:
            found = RabbitCluster.find(root) or RabbitCluster.create(root)
            found.up()
        except (FileNotFoundError, RuntimeError) as exc:
            raise fail(
                f"{exc}; install Debian's rabbitmq-server, or read the node logs under {root}"
            ) from None
        say(f"cluster up under {root}; put this in stalwart.toml:")
        # Unredacted: these are the development passwords docs/deploy.md shows.
        typer.echo(f'[bus]\nurl = "{found.urls()}"')
        typer.echo(f"(foreign publishers: user `client`, refused sys.*: {found.urls('client')})")

    @cluster.command("down")
    def down(
        purge: Annotated[
            bool, typer.Option("--purge", help="Also delete the nodes' data and the state.")
        ] = False,
        directory: DirOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Stop every node of the cluster (kill those that do not stop) and its epmd.

        Example: stalwart dev cluster down --purge
        """
        root = _root(directory, config)
        found = _found(root)
        if purge:
            found.destroy()
        else:
            found.down()
        say(f"cluster under {root} {'deleted' if purge else 'stopped'}")

    @cluster.command("status")
    def status(directory: DirOption = None, config: ConfigOption = None) -> None:
        """Each node: its name, AMQP address, process and whether it answers.

        Example: stalwart dev cluster status
        """
        found = _found(_root(directory, config))
        table = Table()
        for column in ("node", "amqp", "pid", "state"):
            table.add_column(column, no_wrap=True)
        for node in found.nodes:
            proc = node.process()
            if proc is None:
                state = "stopped"
            elif node.isolated():
                state = "isolated"
            else:
                state = "ready" if node.ready() else "starting"
            address = f"{node.spec.host}:{node.spec.amqp_port}"
            table.add_row(node.node, address, str(proc.pid) if proc else "-", state)
        console.print(table)

    @cluster.command("watch")
    def watch(
        interval: Annotated[
            float, typer.Option(min=0.5, max=3600, help="Seconds between two reads.")
        ] = 5.0,
        directory: DirOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Publish sys.ha.queue-leader when a quorum queue's leader moves, until Ctrl-C.

        Reads every queue's leader from a node that answers, on the bus of the
        configuration (point [bus] url at the cluster).

        Example: stalwart dev cluster watch --interval 2 -c stalwart.toml
        """
        settings = settings_from(config)
        run(_watch(_found(_root(directory, config)), settings, interval))
