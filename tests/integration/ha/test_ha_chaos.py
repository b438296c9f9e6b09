"""Chaos with real services: PostgreSQL restarted under a leader; a broker outage repaired.

Each test stops a server of its own for a few seconds (a private PostgreSQL, a
private RabbitMQ node), never the shared ones.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from ha_replicas import drain

from private_services import PrivatePostgres, PrivateRabbit
from stalwart.bus import QueueSpec, open_transport
from stalwart.ha import HealthState, Lease, LeaseKeeper, Monitor, MonitorSettings, status
from stalwart.service import EventPublisher
from stalwart.store.engine import make_engine
from waiting import until

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


async def test_postgres_restart_never_yields_two_leaders(
    private_postgres: PrivatePostgres, unique: str
) -> None:
    # Given three contenders for one role on a PostgreSQL of this test's own, with a 1 s lease
    engines = [make_engine(private_postgres.url, pool_pre_ping=True) for _ in range(3)]
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
        await asyncio.to_thread(private_postgres.restart, "fast", 0.0)
        # Then a single leader holds again once the database is back
        await until(one_leader, 30.0, "a leader after the restart")
    finally:
        sampling = False
        await sampler
        for keeper in keepers:
            await keeper.stop()
        for engine in engines:
            await engine.dispose()
    # And at no instant did two contenders consider themselves leader
    assert most == 1
    # And every new leadership carried a larger fencing token
    assert tokens == sorted(set(tokens))


async def test_monitor_drives_a_broker_outage_through_repair(
    private_rabbit: PrivateRabbit, tmp_path: Path, unique: str
) -> None:
    # Given a monitor of a RabbitMQ node of this test's own whose repair is
    # `rabbitmqctl -n NODE start_app`
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    bus = open_transport(f"sqlite:///{tmp_path}/bus.db")
    await bus.start()
    watch = f"watch-{unique}"
    await bus.declare(QueueSpec(name=watch, patterns=("sys.ha.#",)))
    settings = MonitorSettings(
        name="broker",
        kind="amqp",
        urls=[private_rabbit.url],
        interval=0.5,
        timeout=2.0,
        suspect_after=1,
        repair=private_rabbit.ctl_argv("start_app"),
        repair_timeout=60.0,
    )
    monitor = Monitor(settings, engine, EventPublisher(bus, "ha-test@local/1"))
    try:
        assert await monitor.step() is HealthState.HEALTHY
        # When the broker's application stops
        await asyncio.to_thread(private_rabbit.ctl, "stop_app")

        async def back() -> bool:
            return await monitor.step() is HealthState.HEALTHY and bool(monitor.transitions)

        await until(back, 120.0, "the monitor to repair the broker", interval=0.2)
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
