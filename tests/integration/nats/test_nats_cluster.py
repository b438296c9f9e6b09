"""A three-node JetStream cluster (R3 streams) losing its stream leader under load:
nothing published is lost, and idempotent handlers have every effect exactly once.

The cluster is the project's own (tests/nats_cluster.py): three nats-server
processes with their own ports and store directories. Two instances of an
idempotent service consume while a producer publishes; a third of the way in,
the node leading the work stream is killed. The producer retries a batch
that was not acknowledged (JetStream's duplicate window stores a repeated
id once); effects are rows in the store, written in ``ctx.transaction()``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import sqlalchemy as sa

from nats_cluster import NatsCluster
from stalwart.bus.nats import NatsTransport
from stalwart.config import Settings, load_settings
from stalwart.envelope import Envelope
from stalwart.errors import StalwartError
from stalwart.service import Context, Service, ServiceRunner
from stalwart.store.engine import make_engine

_MESSAGES = 300
_BATCH = 10
_effects = sa.Table(
    "cluster_effects",
    sa.MetaData(),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(64), nullable=False),
)


def _launched(request: pytest.FixtureRequest) -> NatsCluster:
    try:
        nodes = NatsCluster()
    except FileNotFoundError as exc:  # skipped, or failed under STALWART_REQUIRE_SERVICES=1
        root = Path(__file__).resolve().parents[2] / "conftest.py"
        request.config.pluginmanager.get_plugin(str(root)).need(str(exc), False)
        raise
    nodes.launch()
    return nodes


@pytest.fixture
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[NatsCluster]:
    nodes = _launched(request)
    try:
        await nodes.formed()
        yield nodes
    finally:
        nodes.close()


def _settings(tmp_path: Path, url: str, namespace: str) -> Settings:
    config = tmp_path / "stalwart.toml"
    config.write_text("")
    (tmp_path / "home").mkdir(exist_ok=True)
    return load_settings(
        config,
        env={"STALWART_HOME": str(tmp_path / "home")},
        overrides={
            "bus.url": url,
            "bus.exchange": namespace,
            "bus.lease": 3.0,
            "bus.retry_initial": 0.1,
            "bus.retry_max": 0.5,
            "security.secret": "test-secret-for-hs256-signing-key-32b",
        },
    )


def _service(name: str) -> Service:
    svc = Service(name)

    @svc.handler("work.item", idempotent=True)
    async def work(ctx: Context, body: Any) -> None:
        async with ctx.transaction() as tx:
            await tx.execute(_effects.insert().values(message_id=ctx.envelope.id))

    return svc


async def _effects_of(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_effects.metadata.create_all)
            return list((await conn.execute(sa.select(_effects.c.message_id))).scalars())
    finally:
        await engine.dispose()


async def _publish_until_stored(bus: NatsTransport, batch: list[Envelope]) -> None:
    """Publish ``batch``, again until JetStream acknowledges it (a failover takes seconds)."""
    deadline = time.monotonic() + 30.0
    while True:
        try:
            await bus.publish(batch)
            return
        except StalwartError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _stream_leader(cluster: NatsCluster, stream: str) -> str:
    """The name of the node that leads ``stream`` now."""
    nc = await nats.connect(cluster.url.split(","))
    try:
        info = await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()
    assert info.cluster is not None and info.cluster.leader is not None
    return info.cluster.leader


async def test_killing_the_stream_leader_under_load_loses_and_duplicates_nothing(
    cluster: NatsCluster, tmp_path: Path, unique: str
) -> None:
    # Given R3 streams on the cluster and two instances of an idempotent service
    url = f"{cluster.url}?replicas=3"
    settings = _settings(tmp_path, url, f"cluster-{unique}")
    assert await _effects_of(settings.store.url) == []
    buses = [NatsTransport(url, exchange=settings.bus.exchange, publish_timeout=3.0) for _ in "abc"]
    for bus in buses:
        await bus.start()
    svc = _service(f"effects-{unique}")
    runners = [ServiceRunner(svc, bus, settings) for bus in buses[:2]]
    for runner in runners:
        await runner.start()
    producer = buses[2]
    sent: list[str] = []
    try:
        # When a producer publishes and the stream's leader is killed a third of the way in
        for start in range(0, _MESSAGES, _BATCH):
            if start == _MESSAGES // 3 // _BATCH * _BATCH:
                cluster.kill(await _stream_leader(cluster, settings.bus.exchange))
            batch = [Envelope.new("work.item", {"n": start + i}) for i in range(_BATCH)]
            await _publish_until_stored(producer, batch)
            sent.extend(envelope.id for envelope in batch)
        # Then every message has its effect, and none has two
        deadline = time.monotonic() + 40.0
        effects = await _effects_of(settings.store.url)
        while set(effects) != set(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            effects = await _effects_of(settings.store.url)
        lost = set(sent) - set(effects)
        duplicated = len(effects) - len(set(effects))
        print(f"nats cluster: {len(sent)} sent, {len(lost)} lost, {duplicated} duplicate effects")
        assert (len(sent), len(lost), duplicated) == (_MESSAGES, 0, 0)
    finally:
        for runner in runners:
            await runner.stop(grace=1.0)
        for bus in buses:
            await bus.close()
