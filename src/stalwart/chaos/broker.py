"""The campaign's own RabbitMQ node, listening on the sites' hub address, so that
every site reaches the broker over its own link (and a WAN cut cuts it off).

It is a one-node :class:`~stalwart.dev.rabbitmq.RabbitCluster` (its own epmd,
name, ports, cookie, users, data, no plugins) whose node's address is the hub
instead of a loopback address. The shared broker on 5672 is never touched.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from stalwart.dev.ports import free_port
from stalwart.dev.rabbitmq import ClusterState, NodeSpec, RabbitCluster, RabbitNode
from stalwart.dev.rabbitmq_config import definitions_json

__all__ = ["HubBroker"]


class HubBroker:
    """One RabbitMQ node on ``host``; :meth:`close` stops it and deletes its files."""

    def __init__(self, host: str) -> None:
        root = Path(tempfile.mkdtemp(prefix="stalwart-chaos-rmq-"))
        (root / "definitions.json").write_text(definitions_json())
        spec = NodeSpec(
            f"chaos-{uuid.uuid4().hex[:8]}",
            host,
            free_port(host),
            free_port(host),
            str(root / "node"),
        )
        state = ClusterState(root=str(root), epmd_port=free_port(), nodes=(spec,))
        state.save()
        self.cluster = RabbitCluster(state)

    @property
    def node(self) -> RabbitNode:
        return self.cluster.nodes[0]

    @property
    def url(self) -> str:
        return self.cluster.urls()

    def start(self) -> None:
        self.cluster.up()

    def close(self) -> None:
        self.cluster.destroy()
