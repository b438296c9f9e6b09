"""A 3-node RabbitMQ cluster (``stalwart.dev.rabbitmq``): replication, permissions, and
node failures under load.

One cluster serves the module. The failure tests run two producer and two
consumer processes (idempotent handler, effects through ``ctx.transaction()``)
and take the node leading the service's queue away: kill -9, a graceful stop,
a partition (root). They assert nothing lost and no duplicate effect, that the
leader move was published as ``sys.ha.queue-leader`` and stored, and print
how long publishing and consuming stalled and the p99 publish latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable

import pytest
from cluster import healthy, rabbit_cluster
from effects_app import TOPIC
from harness import HERE, System, assert_effectively_once, count, scale, settle
from sqlalchemy import select
from typer.testing import CliRunner

from stalwart.bus import QueueSpec, open_bus
from stalwart.bus._tasks import cancel_and_wait
from stalwart.bus.amqp import AmqpTransport
from stalwart.bus.amqp._names import work_queue
from stalwart.cli import build_app
from stalwart.dev.rabbitmq import RabbitCluster, RabbitNode
from stalwart.dev.rabbitmq_config import POLICY_NAME
from stalwart.envelope import Envelope
from stalwart.errors import PublishRefused
from stalwart.events import QueueLeaderMove
from stalwart.ha.queue_leaders import QueueLeaderWatch
from stalwart.service import EventPublisher
from stalwart.store.engine import make_engine
from stalwart.store.schema import messages
from waiting import until

# The first test also waits for the module's cluster to boot (30-60 s, more under load).
pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

__all__ = ["rabbit_cluster"]  # the module's fixture

LEADER_TOPIC = QueueLeaderMove(queue="q", from_node="a", to_node="b").topic

PER_PRODUCER = scale(400, 4000)
RATE = 25.0  # messages per second per producer: 16 s of load in the short run
BEFORE = 15  # batches (of 5) each producer has confirmed when the fault comes
PRODUCERS = ("producer-a", "producer-b")
QUEUE_STATE = ("list_queues", "name", "type", "leader", "members", "online", "state", "messages")
PARTITION = float(scale(20, 60))  # seconds a partitioned node stays cut off


async def test_quorum_queues_have_a_replica_on_every_node_and_a_short_retry_hop(
    rabbit_cluster: RabbitCluster, unique: str
) -> None:
    # Given the stalwart transport declaring a service's queue, a reply queue and a tail
    bus = AmqpTransport(rabbit_cluster.urls())
    await bus.start()
    replies, tail = f"replies-{unique}", f"tail-{unique}"
    try:
        await bus.declare(QueueSpec(name=f"repl-{unique}", patterns=("repl.#",)))
        await bus.declare(
            QueueSpec(name=replies, patterns=(replies,), ephemeral=True, lossless=True)
        )
        await bus.declare(QueueSpec(name=tail, patterns=("#",), ephemeral=True))
        rows = {r["name"]: r for r in await asyncio.to_thread(rabbit_cluster.queues)}
    finally:
        await bus.close()
    # Then the first two are quorum queues with a member on each node (replies outlive
    # the loss of the node their requester is connected to), the service's under the
    # policy; the tail, which copies every message, costs one node's classic queue
    nodes = sorted(node.node for node in rabbit_cluster.nodes)
    name = work_queue("stalwart", f"repl-{unique}")
    for queue in (name, work_queue("stalwart", replies)):
        assert rows[queue]["type"] == "quorum"
        assert sorted(rows[queue]["members"]) == nodes
    assert rows[work_queue("stalwart", tail)]["type"] == "classic"
    policies = await asyncio.to_thread(rabbit_cluster.ctl_any, "list_queues", "name", "policy")
    assert f"{name}\t{POLICY_NAME}" in policies
    # And every node resends a retry's unconfirmed dead-letter hop back to its work
    # queue within 5 s (180 s by default, see docs/deploy.md)
    for node in rabbit_cluster.nodes:
        shown = node.ctl(
            "eval", "application:get_env(rabbit, dead_letter_worker_publisher_confirm_timeout)."
        )
        assert shown.strip() == "{ok,5000}", (node.node, shown)


async def test_client_user_cannot_publish_sys_topics(rabbit_cluster: RabbitCluster) -> None:
    # Given a foreign publisher connected as `client`, and stalwart's parts as `stalwart`
    # (a stalwart part starts first and creates the exchanges and the directory queue,
    # which the client may then declare again but not create)
    client = AmqpTransport(rabbit_cluster.urls("client"))
    own = AmqpTransport(rabbit_cluster.urls())
    await own.start()
    await client.start()
    try:
        # When the client publishes an ordinary topic, then sys.*
        await client.publish([Envelope.new("chaos.item", {"n": 1})])
        with pytest.raises(PublishRefused, match=r"ACCESS_REFUSED.*sys\.heartbeat"):
            await client.publish([Envelope.new("sys.heartbeat", {"n": 2})])
        # Then the broker refused only sys.*: the client goes on, stalwart may publish sys.*
        await client.publish([Envelope.new("chaos.item", {"n": 3})])
        await own.publish([Envelope.new("sys.heartbeat", {"n": 4})])
    finally:
        await client.close()
        await own.close()


def test_cli_finds_the_cluster_and_prints_its_bus_url(rabbit_cluster: RabbitCluster) -> None:
    runner = CliRunner()
    app = build_app(["dev"])
    root = str(rabbit_cluster.root)
    status = runner.invoke(app, ["dev", "cluster", "status", "--dir", root])
    assert status.exit_code == 0, status.output
    assert status.output.count("ready") == 3
    up = runner.invoke(app, ["dev", "cluster", "up", "--dir", root])  # already up: no change
    assert up.exit_code == 0, up.output
    assert rabbit_cluster.urls() in up.output.replace("\n", "")
    missing = runner.invoke(app, ["dev", "cluster", "status", "--dir", f"{root}/nowhere"])
    assert missing.exit_code == 1
    assert "start one with `stalwart dev cluster up`" in missing.output


# -- node failures under load -------------------------------------------------


async def _leading_node(cluster: RabbitCluster, service: str) -> RabbitNode:
    """Declare ``service``'s queue as its consumers will; the node that leads it."""
    bus = AmqpTransport(cluster.urls())
    await bus.start()
    try:
        await bus.declare(QueueSpec(name=service, patterns=(TOPIC,)))
    finally:
        await bus.close()
    leader = await asyncio.to_thread(cluster.leader, work_queue("stalwart", service))
    return cluster.node(leader or "")


def _inject(fault: str, node: RabbitNode) -> None:
    {"kill": node.kill, "stop": node.stop, "partition": node.isolate}[fault]()


async def _sample(store_url: str, service: str, prefix: str, into: list[tuple[float, int]]) -> None:
    """(time, distinct effects) every 0.25 s, to see when consuming stalls."""
    while True:
        with contextlib.suppress(Exception):  # a failed sample leaves a gap, as it should
            counts = await count(store_url, service, prefix, 0)
            into.append((time.time(), counts.distinct_effects))
        await asyncio.sleep(0.25)


def _longest_gap(times: list[float], after: float) -> float:
    """The longest time without progress from ``after`` to the last progress."""
    later = sorted(t for t in times if t >= after)
    return max((b - a for a, b in zip([after, *later], later, strict=False)), default=0.0)


def _publishes(log: str) -> list[tuple[float, float]]:
    """(start, end) of each confirmed batch, from a timed producer's log."""
    found = []
    for line in log.splitlines():
        if line.startswith("ok "):
            _ok, start, end, _attempts = line.split()
            found.append((float(start), float(end)))
    return found


def _p99(values: list[float]) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, int(len(ranked) * 0.99))] if ranked else 0.0


async def _watch(watch: QueueLeaderWatch, into: list[QueueLeaderMove]) -> None:
    """Read the leaders every second (each read takes seconds), keeping the moves."""
    while True:
        into += await watch.step()
        await asyncio.sleep(1.0)


async def _moved(moves: list[QueueLeaderMove], victim: RabbitNode) -> bool:
    return any(move.from_node == victim.node for move in moves)


async def _stored(store_url: str, queue: str) -> list[dict[str, object]]:
    engine = make_engine(store_url)
    try:
        async with engine.connect() as conn:
            query = select(messages.c.body).where(messages.c.topic == LEADER_TOPIC)
            rows = await conn.execute(query)
            return [dict(r[0]) for r in rows if dict(r[0]).get("queue") == queue]
    finally:
        await engine.dispose()


@pytest.mark.timeout(scale(400, 1200))
@pytest.mark.parametrize("fault", ["kill", "stop", "partition"])
async def test_leader_node_failure_under_load(
    fault: str,
    rabbit_cluster: RabbitCluster,
    postgres_url: str,
    make_system: Callable[..., System],
    unique: str,
) -> None:
    if fault == "partition" and os.geteuid() != 0:
        pytest.skip("a partition needs root (a blackhole route for the node's address)")
    cluster = rabbit_cluster
    await asyncio.to_thread(healthy, cluster)
    # Given a service whose queue is led by the node every process connects to first
    service = f"cluster-{fault}-{unique}"
    queue = work_queue("stalwart", service)
    victim = await _leading_node(cluster, service)
    # And two consumer processes of the (idempotent) service and a persister
    system = make_system(cluster.urls(first=victim), postgres_url, service)
    await system.prepare()
    await system.consumers(2)
    # And a watch publishing leader moves (again at its next read when the bus refuses)
    bus = open_bus(system.settings, outbox=False)
    await bus.start()
    watch = QueueLeaderWatch(cluster.leaders, EventPublisher(bus, "test"), prefix=queue)
    await watch.step()  # the leaders before the fault
    moves: list[QueueLeaderMove] = []
    watching = asyncio.create_task(_watch(watch, moves))
    samples: list[tuple[float, int]] = []
    sampling = asyncio.create_task(_sample(postgres_url, service, unique, samples))
    started = time.monotonic()
    try:
        try:
            # And two producer processes publishing at a steady rate
            load = (str(PER_PRODUCER), str(RATE))
            for name in PRODUCERS:
                prefix = f"{unique}-{name[-1]}"
                system.spawn(name, [sys.executable, str(HERE / "timed_producer.py"), prefix, *load])
            total = len(PRODUCERS) * PER_PRODUCER

            # When the node leading the service's queue fails while both publish
            async def publishing() -> bool:
                return all(len(_publishes(system.log(n))) >= BEFORE for n in PRODUCERS)

            await until(publishing, 90, f"{BEFORE} batches from each producer", interval=0.2)
            fault_at = time.time()
            await asyncio.to_thread(_inject, fault, victim)
            if fault == "partition":
                await asyncio.sleep(max(0.0, fault_at + PARTITION - time.time()))
                victim.heal()
            try:
                for name in PRODUCERS:
                    await system.finished(name, scale(180, 900))
            except AssertionError:
                print(await asyncio.to_thread(cluster.ctl_any, *QUEUE_STATE))  # why, on failure
                raise
            # And every message has exactly one effect and ends consumed
            counts = await settle(postgres_url, service, unique, total, scale(120, 600), quiet=2.0)
            # Then another node leads the queue, and the watch published the move
            await until(
                lambda: _moved(moves, victim),
                90,
                f"a leader move of {queue} from {victim.node}",
                interval=0.2,
            )
        finally:
            sampling.cancel()
            await asyncio.to_thread(healthy, cluster)
        assert_effectively_once(counts, f"cluster {fault}", time.monotonic() - started)

        # And the persister stored that event (the watch, still running, publishes
        # again a move the bus refused during the fault)
        async def stored() -> bool:
            return any(m["from_node"] == victim.node for m in await _stored(postgres_url, queue))

        await until(
            stored,
            60,
            f"the stored {LEADER_TOPIC} event (read: {moves}; not yet published: "
            f"{watch.unpublished})",
            interval=0.2,
        )
    finally:
        await cancel_and_wait(watching)  # its rabbitmqctl child ends with it
        await bus.close()
    # Measured: how long publishing and consuming stalled, the p99 publish latency
    batches = [b for name in PRODUCERS for b in _publishes(system.log(name))]
    publish_stall = max(
        _longest_gap([end for _s, end in _publishes(system.log(n))], fault_at) for n in PRODUCERS
    )
    consume_stall = _longest_gap(_progress_times(samples), fault_at)
    window = [e - s for s, e in batches if fault_at - 1 <= s <= fault_at + publish_stall + 5]
    new_leader = next(m.to_node for m in moves if m.from_node == victim.node)
    print(
        f"[cluster {fault}] leader {victim.node} -> {new_leader}: "
        f"publishing stalled {publish_stall:.1f}s, consuming {consume_stall:.1f}s; "
        f"publish latency during failover p99 {_p99(window) * 1000:.0f} ms, max "
        f"{max(window, default=0) * 1000:.0f} ms ({len(window)} batches); "
        f"p99 overall {_p99([e - s for s, e in batches]) * 1000:.0f} ms"
    )
    assert len(batches) == total // 5
    assert any(start > fault_at for start, _end in batches), "the load ended before the fault"
    hung = [line for n in PRODUCERS for line in system.log(n).splitlines() if "hung" in line]
    assert hung == [], "a publish neither returned nor raised"


def _progress_times(samples: list[tuple[float, int]]) -> list[float]:
    """The sample times at which the number of effects had grown."""
    return [t for (t, n), (_t, before) in zip(samples[1:], samples, strict=False) if n > before]
