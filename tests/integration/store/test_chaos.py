"""Chaos: PostgreSQL restarts and a subscriber killed with SIGKILL, mid-stream; nothing is lost.

Both tests stream 20,000 messages (and their received/consumed states) over the
embedded bus into a PostgreSQL store and check every message and final state.
The restart is of a PostgreSQL server of that test's own, never the shared one.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from store_traffic import Traffic

from private_services import PrivatePostgres
from stalwart.bus import Transport
from stalwart.store import PERSIST_QUEUE, Persister, PersistOptions, Store
from stalwart.store.schema import deliveries, messages
from waiting import until

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

TOTAL = 20_000
CHUNK = 500


async def _publish_stream(bus: Transport, traffic: Traffic) -> None:
    for start in range(0, TOTAL, CHUNK):
        envs = [traffic.message(body={"i": i}) for i in range(start, start + CHUNK)]
        await bus.publish(envs)
        steps = [traffic.step(e, "pipeline", s) for e in envs for s in ("received", "consumed")]
        await bus.publish([traffic.lifecycle(*steps)])


async def _counts(store: Store) -> tuple[int, int]:
    """(plain messages stored, deliveries consumed); (-1, -1) while the database is away.

    Plain: not ``sys.*`` (lifecycle batches, and the subscriber's own heartbeats).
    """
    plain = select(func.count()).select_from(messages).where(messages.c.topic.not_like("sys.%"))
    consumed = select(func.count()).select_from(deliveries).where(deliveries.c.state == "consumed")
    try:
        async with store.engine.connect() as conn:
            return int(await conn.scalar(plain) or 0), int(await conn.scalar(consumed) or 0)
    except Exception:
        return -1, -1


async def _wait_for(store: Store, stored: int, timeout: float) -> tuple[int, int]:
    """(stored, consumed) once at least ``stored`` messages are in the store."""
    return await until(
        lambda: _counts(store),
        timeout,
        f"{stored} messages stored (stored, consumed)",
        accept=lambda counts: counts[0] >= stored,
        interval=0.2,
    )


async def _assert_complete(store: Store, bus: Transport) -> None:
    await _wait_for(store, TOTAL, 240)
    counts = await until(
        lambda: _counts(store),
        60,
        f"all {TOTAL} consumed (stored, consumed)",
        accept=lambda counts: counts[1] >= TOTAL,
        interval=0.2,
    )
    assert counts == (TOTAL, TOTAL)
    assert await bus.dead_letters(PERSIST_QUEUE) == []


async def test_a_postgresql_restart_mid_stream_loses_nothing(
    private_postgres: PrivatePostgres, bus: Transport, traffic: Traffic
) -> None:
    # Given a persister streaming from the embedded bus into a PostgreSQL of this test's own
    store = await Store.open(private_postgres.url)
    options = PersistOptions(retry_initial=0.2, retry_max=2.0)
    persister = Persister(bus, store, options)
    await persister.declare()
    task = asyncio.create_task(persister.run())
    try:
        publisher = asyncio.create_task(_publish_stream(bus, traffic))
        # When PostgreSQL restarts once a few thousand messages are in
        assert (await _wait_for(store, 3_000, 120))[0] >= 3_000
        # (away for 1 s: a restart with no gap can fall between two batches, and
        # the pool reconnects before a write ever fails: then nothing was tested)
        await asyncio.to_thread(private_postgres.restart, "fast", 1.0)
        await asyncio.wait_for(publisher, 240)
        # Then all 20,000 messages are stored, each consumed, and the persister retried
        await _assert_complete(store, bus)
        assert persister.stats.retries >= 1
    finally:
        persister.stop()
        await asyncio.wait_for(task, 60)
        await store.close()


def _start_subscriber(config: Path) -> subprocess.Popen[bytes]:
    stalwart = Path(sys.executable).with_name("stalwart")
    return subprocess.Popen(
        [
            str(stalwart),
            "store",
            "persist",
            "-c",
            str(config),
            "--lease",
            "3",
            "--batch-size",
            "500",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _stop(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        await asyncio.to_thread(process.wait, 30)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait, 30)


@pytest.mark.postgres
async def test_a_subscriber_killed_mid_batch_loses_nothing_and_applies_once(
    postgres_url: str, sqlite_bus_url: str, bus: Transport, traffic: Traffic, tmp_path: Path
) -> None:
    # Given 20,000 messages with their states waiting on the bus, and a subscriber process
    config = tmp_path / "stalwart.toml"
    config.write_text(f'[bus]\nurl = "{sqlite_bus_url}"\n[store]\nurl = "{postgres_url}"\n')
    store = await Store.open(postgres_url)
    await Persister(bus, store, PersistOptions(lease=3.0)).declare()
    await _publish_stream(bus, traffic)
    first = _start_subscriber(config)
    try:
        # When it is killed with SIGKILL in the middle of the stream, then started again
        stored = (await _wait_for(store, 5_000, 180))[0]
        assert 5_000 <= stored < TOTAL, "the stream was not in progress at the kill"
        await _stop(first, signal.SIGKILL)
        second = _start_subscriber(config)
        try:
            # Then every message is stored once, every state is final, nothing dead-lettered
            await _assert_complete(store, bus)
        finally:
            await _stop(second, signal.SIGTERM)
        assert second.returncode == 0
    finally:
        await _stop(first, signal.SIGKILL)
        await store.close()
