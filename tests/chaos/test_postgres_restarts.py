"""(a) The store's PostgreSQL restarted twice (``-m fast``, then ``-m immediate``) while two
consumer processes apply effects: every message has one effect and ends consumed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import System, assert_effectively_once, scale, settle

from private_services import PrivatePostgres

TOTAL = scale(200, 5_000)


@pytest.mark.timeout(scale(120, 900))
async def test_postgresql_restarted_twice_under_load(
    private_postgres: PrivatePostgres,
    make_system: Callable[..., System],
    tmp_path: Path,
    unique: str,
) -> None:
    # Given two consumer processes and a persister on the embedded bus, storing in a
    # PostgreSQL of this test's own
    started = time.monotonic()
    service = f"pg-restarts-{unique}"
    store = private_postgres.url
    system = make_system(f"sqlite:///{tmp_path}/bus.db", store, service)
    await system.prepare()
    await system.consumers(2)
    producer = system.producer(unique, TOTAL)

    # When PostgreSQL restarts (2 s down) fast after a third of the effects, and immediately
    # after two thirds
    await system.wait_applied(unique, TOTAL, 1 / 3, scale(60, 300))
    await asyncio.to_thread(private_postgres.restart, "fast", 2.0)
    await system.wait_applied(unique, TOTAL, 2 / 3, scale(60, 300))
    await asyncio.to_thread(private_postgres.restart, "immediate", 2.0)
    await system.finished(producer, scale(60, 300))
    # Then every message has exactly one effect and ends consumed in the store
    counts = await settle(store, service, unique, TOTAL, scale(60, 600), quiet=2.0)
    assert_effectively_once(counts, "postgres restarts", time.monotonic() - started)
