"""The 3-node RabbitMQ cluster fixture (:class:`stalwart.dev.rabbitmq.RabbitCluster`).

Import ``rabbit_cluster`` into a test module: one cluster per module, booted
once (its nodes start in parallel, 30-60 s on a busy machine), stopped and
deleted afterwards whatever happened (``STALWART_KEEP_CLUSTER=1``: stopped,
its files and logs kept). A test that takes a node down brings it back before
it ends (:func:`healthy`), so the next test finds three nodes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stalwart.dev.rabbitmq import RABBITMQ_BIN, RabbitCluster

__all__ = ["healthy", "rabbit_cluster"]


def _need(request: pytest.FixtureRequest, what: str, available: bool) -> None:
    """Skip (or fail under STALWART_REQUIRE_SERVICES=1, see tests/conftest.py)."""
    root = Path(__file__).resolve().parents[1] / "conftest.py"
    request.config.pluginmanager.get_plugin(str(root)).need(what, available)


@pytest.fixture(scope="module")
def rabbit_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RabbitCluster]:
    """A running, joined 3-node cluster with the users and policy of docs/deploy.md."""
    _need(request, "Debian rabbitmq-server", (RABBITMQ_BIN / "rabbitmq-server").exists())
    cluster = RabbitCluster.create(tmp_path_factory.mktemp("rabbit-cluster"))
    try:
        cluster.up()
        yield cluster
    finally:
        # STALWART_KEEP_CLUSTER=1 keeps the nodes' logs (under the test's tmp dir)
        cluster.down() if os.environ.get("STALWART_KEEP_CLUSTER") == "1" else cluster.destroy()


def healthy(cluster: RabbitCluster, timeout: float = 180.0) -> None:
    """Heal, start and wait for every node, until all three run as one cluster."""
    for node in cluster.nodes:
        node.heal()
    for node in cluster.nodes:
        node.launch()
    for node in cluster.nodes:
        node.wait_ready(timeout)
    names = {node.node for node in cluster.nodes}
    cluster.wait_for(
        lambda: set(cluster.members()["running"]) == names, timeout, "all three nodes running"
    )
