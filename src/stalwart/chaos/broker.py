"""The campaign's own RabbitMQ cluster: three nodes, each on an address of its own on
the sites' bridge, so that every site reaches the broker over its own link (and a
WAN cut cuts it off), a node can be killed or partitioned alone, and the quorum
queues keep a majority.

It is a :class:`~stalwart.dev.rabbitmq.RabbitCluster` (its own epmd, names, ports,
cookie, users, data, no plugins) whose nodes listen on the bridge's addresses
instead of loopback ones. The shared broker on 5672 is never touched.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from stalwart.dev.ports import free_port
from stalwart.dev.rabbitmq import ClusterState, NodeSpec, RabbitCluster, RabbitNode
from stalwart.dev.rabbitmq_config import definitions_json

__all__ = ["HubBroker"]


class HubBroker:
    """One RabbitMQ node per address in ``hosts``, joined; :meth:`close` stops them and
    deletes their files. Fault targets name the nodes ``broker-1``, ``broker-2``, ..."""

    def __init__(self, hosts: Sequence[str]) -> None:
        root = Path(tempfile.mkdtemp(prefix="stalwart-chaos-rmq-"))
        (root / "definitions.json").write_text(definitions_json())
        tag = uuid.uuid4().hex[:8]
        specs = tuple(
            NodeSpec(
                f"chaos-{tag}-{n}",
                host,
                free_port(host),
                free_port(host),
                str(root / f"node-{n}"),
            )
            for n, host in enumerate(hosts, start=1)
        )
        state = ClusterState(root=str(root), epmd_port=free_port(), nodes=specs)
        state.save()
        self.cluster = RabbitCluster(state)

    @property
    def targets(self) -> list[str]:
        """The nodes' names as fault targets."""
        return [f"broker-{n}" for n in range(1, len(self.cluster.nodes) + 1)]

    def node(self, target: str) -> RabbitNode:
        """The node a fault target (``broker-2``) names."""
        if target not in self.targets:
            raise KeyError(f"no broker node {target!r}; the nodes are {', '.join(self.targets)}")
        return self.cluster.nodes[self.targets.index(target)]

    @property
    def url(self) -> str:
        return self.cluster.urls()

    def start(self) -> None:
        self.cluster.up()

    def close(self) -> None:
        self.cluster.destroy()
