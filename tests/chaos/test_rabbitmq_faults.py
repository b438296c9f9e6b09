"""(b) A RabbitMQ node of this test's own stopped (``stop_app``/``start_app``) and then
killed with SIGKILL while two producers publish through their outboxes and two consumer
processes apply effects: every message has one effect and ends consumed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from harness import System, assert_effectively_once, scale, settle

from private_services import PrivateRabbit

pytestmark = pytest.mark.postgres

TOTAL = scale(300, 10_000)


@pytest.mark.timeout(scale(150, 900))
async def test_rabbitmq_stopped_and_killed_under_load(
    private_rabbit: PrivateRabbit,
    postgres_url: str,
    make_system: Callable[..., System],
    unique: str,
) -> None:
    # Given a persister and two consumer processes on a private RabbitMQ node
    started = time.monotonic()
    service = f"rmq-faults-{unique}"
    system = make_system(private_rabbit.url, postgres_url, service, exchange=f"chaos-{unique}")
    await system.prepare()
    await system.consumers(2)
    # And two producers, each publishing half of the messages
    producers = [system.producer(f"{unique}-{p}", TOTAL // 2) for p in "ab"]

    # When the broker's application stops for 3 s after a third of the effects, and the
    # node is killed (and started 2 s later) after two thirds
    await system.wait_applied(unique, TOTAL, 1 / 3, scale(60, 300))
    await asyncio.to_thread(private_rabbit.outage, 3.0)
    await system.wait_applied(unique, TOTAL, 2 / 3, scale(90, 400))
    await asyncio.to_thread(private_rabbit.kill9, 2.0)
    for producer in producers:
        await system.finished(producer, scale(90, 600))
    # Then every message has exactly one effect and ends consumed in the store
    counts = await settle(postgres_url, service, unique, TOTAL, scale(90, 600), quiet=2.0)
    assert_effectively_once(counts, "rabbitmq stop/kill", time.monotonic() - started)
