"""Chaos with real services: PostgreSQL restarted under a leader; a broker outage repaired.

Both tests stop a shared service for a few seconds and restore it in a
``finally`` whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from ha_replicas import drain

from stalwart.bus import QueueSpec, open_transport
from stalwart.ha import HealthState, Lease, LeaseKeeper, Monitor, MonitorSettings, status
from stalwart.service import EventPublisher
from stalwart.store.engine import make_engine
from waiting import until

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def _up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


async def _run(*argv: str, timeout: float = 90.0) -> None:
    await asyncio.to_thread(
        subprocess.run, list(argv), check=True, timeout=timeout, capture_output=True
    )


async def _restore(start: list[str], port: int) -> None:
    """Start the service again if it is not answering; wait for its port."""
    deadline = time.monotonic() + 90
    while not _up(port):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            await _run(*start)
        if time.monotonic() > deadline:
            raise RuntimeError(f"service on port {port} did not come back; start it by hand")
        await asyncio.sleep(0.5)


def _pg_cluster() -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


@pytest.mark.postgres
async def test_postgres_restart_never_yields_two_leaders(postgres_url: str, unique: str) -> None:
    # Given three contenders for one role on PostgreSQL, with a 1 s lease
    engines = [make_engine(postgres_url, pool_pre_ping=True) for _ in range(3)]
    keepers = [
        LeaseKeeper(Lease(e, f"leader-{unique}", ttl=1.0), renew_every=0.3, poll=0.1)
        for e in engines
    ]
    most = 0
    tokens: list[int] = []
    sampling = True

    async def sample() -> None:
        nonlocal most
        while sampling:
            held = [k.lease.token for k in keepers if k.lease.held()]
            most = max(most, len(held))
            if held and (not tokens or tokens[-1] != held[0]):
                tokens.append(int(held[0] or 0))
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    try:
        for keeper in keepers:
            keeper.start()

        async def one_leader() -> bool:
            return sum(k.lease.held() for k in keepers) == 1

        await until(one_leader, 15.0, "a leader")
        # When PostgreSQL restarts while the leader holds
        await _run(*_pg_cluster(), "restart")
        # Then a single leader holds again once the database is back
        await until(one_leader, 30.0, "a leader after the restart")
    finally:
        sampling = False
        await sampler
        for keeper in keepers:
            await keeper.stop()
        await _restore([*_pg_cluster(), "start"], 5432)
        for engine in engines:
            await engine.dispose()
    # And at no instant did two contenders consider themselves leader
    assert most == 1
    # And every new leadership carried a larger fencing token
    assert tokens == sorted(set(tokens))


@pytest.mark.rabbitmq
async def test_monitor_drives_a_broker_outage_through_repair(
    rabbitmq_url: str, tmp_path: Path, unique: str
) -> None:
    # Given a monitor of the real broker whose repair is `rabbitmqctl start_app`
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    bus = open_transport(f"sqlite:///{tmp_path}/bus.db")
    await bus.start()
    watch = f"watch-{unique}"
    await bus.declare(QueueSpec(name=watch, patterns=("sys.ha.#",)))
    settings = MonitorSettings(
        name="broker",
        kind="amqp",
        urls=[rabbitmq_url],
        interval=0.5,
        timeout=2.0,
        suspect_after=1,
        repair=["rabbitmqctl", "start_app"],
        repair_timeout=60.0,
    )
    monitor = Monitor(settings, engine, EventPublisher(bus, "ha-test@local/1"))
    try:
        assert await monitor.step() is HealthState.HEALTHY
        # When the broker's application stops
        await _run("rabbitmqctl", "stop_app")

        async def back() -> bool:
            return await monitor.step() is HealthState.HEALTHY and bool(monitor.transitions)

        await until(back, 120.0, "the monitor to repair the broker", interval=0.2)
    finally:
        await _restore(["rabbitmqctl", "start_app"], 5672)
    try:
        # Then it went healthy -> suspect -> recovering -> healthy, by repair
        moves = [(a.value, b.value) for a, b, _ in monitor.transitions]
        assert moves == [
            ("healthy", "suspect"),
            ("suspect", "recovering"),
            ("recovering", "healthy"),
        ]
        assert "repaired" in monitor.transitions[-1][2]
        # And every transition is stored and was published
        shown = await status(engine)
        assert [(t.from_state, t.to_state) for t in reversed(shown.transitions)] == moves
        assert shown.monitors[0].state == "healthy"
        events = await drain(bus, watch, 3, 10.0)
        assert [e.body["to_state"] for e in events] == ["suspect", "recovering", "healthy"]
        assert {e.topic for e in events} == {"sys.ha.monitor"}
    finally:
        await bus.close()
        await engine.dispose()
