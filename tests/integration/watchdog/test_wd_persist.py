"""The persister under the watchdog as `stalwart up` runs it: frozen, it is halted, restarted."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from wd_support import program

from stalwart.bus import Transport
from stalwart.cli._stack import stack
from stalwart.config import load_settings
from stalwart.envelope import Envelope
from stalwart.store import Store
from stalwart.store.schema import messages
from waiting import until

pytest.importorskip("stalwart.bus.sqlite")


@pytest.fixture
async def store(sqlite_store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(sqlite_store_url)
    yield opened
    await opened.close()


async def _stored(store: Store, topic: str) -> int:
    query = select(func.count()).select_from(messages).where(messages.c.topic == topic)
    async with store.engine.connect() as conn:
        return int(await conn.scalar(query) or 0)


@pytest.mark.slow
async def test_a_frozen_persister_is_restarted_and_stores_what_came_meanwhile(
    tmp_path: Path,
    sqlite_bus_url: str,
    sqlite_store_url: str,
    bus: Transport,
    store: Store,
    supervise: Any,
    unique: str,
) -> None:
    # Given the persist program of `stalwart up` (its command and heartbeat name), with
    # heartbeats every 0.2 s and a 3 s heartbeat timeout instead of 1 s and 15 s
    env = {
        "STALWART_BUS_URL": sqlite_bus_url,
        "STALWART_STORE_URL": sqlite_store_url,
        "STALWART_HOME": str(tmp_path / "home"),
    }
    [persist] = stack(load_settings(env=env), demo_workflow=False, dashboard=False).programs
    assert persist.service is not None
    prog = program(
        persist.name,
        [*persist.command, "--heartbeat", "0.2", "--lease", "5"],
        env=env,
        service=persist.service,
        heartbeat_timeout=3.0,
        startup_time=30.0,
        check_interval=0.2,
    )
    watchdog, events = await supervise(prog, bus=sqlite_bus_url)
    healthy = (await events.wait_kind("healthy", "persist", timeout=60.0))[0]
    assert healthy.reason == "first heartbeat"
    before, during = f"before.{unique}", f"during.{unique}"
    await bus.publish([Envelope.new(before, {"n": n}) for n in range(20)])
    await until(lambda: _stored(store, before), 30.0, "20 stored", accept=lambda n: n == 20)
    # When it is frozen (SIGSTOP, at whatever it was doing) and 30 messages are published
    frozen = watchdog.groups["persist"].members[0].pid
    assert frozen is not None
    os.kill(frozen, signal.SIGSTOP)
    await bus.publish([Envelope.new(during, {"n": n}) for n in range(30)])
    # Then it is reported late, halted and restarted
    late = (await events.wait_kind("late", "persist", timeout=30.0))[0]
    assert late.pid == frozen
    assert late.evidence["beats"] >= 1
    assert 3.0 <= late.evidence["silent_for"] < 3.0 + 2.0  # rounded to the ms
    halted = (await events.wait_kind("halted", "persist", timeout=30.0))[0]
    assert halted.evidence["signal"] == "SIGKILL"  # a stopped process does not act on SIGTERM
    restarted = (await events.wait_kind("restarted", "persist", timeout=30.0))[0]
    assert "no heartbeat" in restarted.reason
    assert restarted.pid != frozen
    # And the messages published while it was frozen are stored, each once
    await until(lambda: _stored(store, during), 60.0, "30 stored", accept=lambda n: n == 30)
