"""The watchdog on the bus: events published, service heartbeats consumed, elastic groups
scaled by backlog without losing messages, and supervision while the bus is down."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from wd_support import program

from stalwart.bus import QueueSpec, Transport
from stalwart.envelope import Envelope
from waiting import until

pytest.importorskip("stalwart.bus.sqlite")

WORKER = """
import asyncio, os, sys, time
from stalwart.config import load_settings
from stalwart.service import Service, serve

svc = Service({name!r}, concurrency=2, heartbeat_interval=0.2, grace=5.0)

@svc.handler({topic!r})
async def work(ctx, body):
    if body.get("block"):
        time.sleep(600)  # blocks the event loop: no more heartbeats
    await asyncio.sleep({pause})
    ctx.progress(1)
    with open({out!r}, "a") as f:
        f.write(f"{{body['n']}}\\n")

asyncio.run(serve(svc, load_settings()))
"""


def _worker(tmp_path: Path, name: str, topic: str, pause: float = 0.02) -> list[str]:
    path = tmp_path / f"{name}.py"
    out = tmp_path / f"{name}.out"
    path.write_text(
        textwrap.dedent(WORKER.format(name=name, topic=topic, out=str(out), pause=pause))
    )
    return [sys.executable, str(path)]


def _env(tmp_path: Path, bus_url: str) -> dict[str, str]:
    return {
        "STALWART_BUS_URL": bus_url,
        "STALWART_HOME": str(tmp_path / "home"),
        "STALWART_STORE_URL": f"sqlite:///{tmp_path}/store.db",
    }


async def _collect(transport: Transport, queue: str, into: list[Envelope]) -> None:
    async for delivery in transport.consume(queue, prefetch=100):
        if delivery.envelope is not None:
            into.append(delivery.envelope)
        await delivery.ack()


@pytest.mark.slow
async def test_elastic_group_scales_with_backlog_and_loses_nothing(
    tmp_path: Path, sqlite_bus_url: str, bus: Transport, supervise: Any, unique: str
) -> None:
    # Given an elastic group (1..3 members) serving a service queue, and a tap on sys.watchdog
    name, topic = f"elastic-{unique}", f"work.{unique}"
    tap: list[Envelope] = []
    await bus.declare(QueueSpec(f"tap-{unique}", ("sys.watchdog.#",), ephemeral=True))
    collector = asyncio.create_task(_collect(bus, f"tap-{unique}", tap))
    prog = program(
        "elastic",
        _worker(tmp_path, name, topic),
        env=_env(tmp_path, sqlite_bus_url),
        service=name,
        replicas=1,
        min_replicas=1,
        max_replicas=3,
        target_backlog_per_replica=40,
        scale_cooldown=1.0,
        check_interval=0.2,
        stop_grace=5.0,
        heartbeat_timeout=60.0,
    )
    _watchdog, events = await supervise(prog, bus=sqlite_bus_url)
    try:
        # (its first heartbeat: the service is up and its queue declared)
        healthy = (await events.wait_kind("healthy", "elastic", timeout=60.0))[0]
        assert healthy.reason == "first heartbeat"
        # When a backlog of 300 messages builds up
        await bus.publish([Envelope.new(topic, {"n": n}) for n in range(300)])
        up = await events.wait(lambda e: e.event == "scaled" and e.evidence["to"] == 3, 30.0)
        # Then the group scales up, with the backlog as the evidence
        assert up.evidence["backlog"] > 80
        # When the queue drains
        down = await events.wait(lambda e: e.event == "scaled" and e.evidence["to"] == 1, 60.0)
        # Then it scales back down gracefully, and every message was processed
        assert down.evidence["backlog"] <= 40
        out = tmp_path / f"{name}.out"
        await until(
            lambda: len(set(out.read_text().split())),
            30.0,
            "all 300 items processed",
            accept=lambda n: n == 300,
        )
        done = {int(n) for n in out.read_text().split()}
        assert done == set(range(300))
        stopped = await events.wait(lambda e: e.event == "stopped" and e.program == "elastic", 10)
        assert stopped.reason == "scaled down"
        assert not events.of("exited", "elastic")
        # And the decisions went onto the bus
        await until(
            lambda: [e.topic for e in tap],
            10.0,
            "sys.watchdog.scaled on the bus",
            accept=lambda topics: "sys.watchdog.scaled" in topics,
        )
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector


@pytest.mark.slow
async def test_service_heartbeats_over_the_bus_detect_a_hang(
    tmp_path: Path, sqlite_bus_url: str, bus: Transport, supervise: Any, unique: str
) -> None:
    # Given a stalwart service under the watchdog, beating over the bus
    name, topic = f"hb-{unique}", f"job.{unique}"
    prog = program(
        "svc",
        _worker(tmp_path, name, topic),
        env=_env(tmp_path, sqlite_bus_url),
        service=name,
        heartbeat_timeout=3.0,
        check_interval=0.2,
    )
    _watchdog, events = await supervise(prog, bus=sqlite_bus_url)
    healthy = (await events.wait_kind("healthy", "svc", timeout=60.0))[0]
    assert healthy.reason == "first heartbeat"
    # When a message makes its handler block the event loop
    await bus.publish([Envelope.new(topic, {"n": 0, "block": True})])
    # Then its heartbeats stop, it is reported late, halted and restarted
    late = (await events.wait_kind("late", "svc", timeout=30.0))[0]
    assert late.evidence["beats"] >= 1
    assert 3.0 <= late.evidence["silent_for"] < 3.0 + 2.0  # rounded to the ms
    await events.wait_kind("restarted", "svc", timeout=30.0)


async def test_supervision_goes_on_while_the_bus_is_unreachable(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a bus URL nothing listens on
    cmd = [sys.executable, "-c", "import sys, time; time.sleep(0.2); sys.exit(5)"]
    watchdog, events = await supervise(
        program("crashy", cmd), bus="amqp://guest:guest@127.0.0.1:1/"
    )
    # When the program crashes
    restarted = (await events.wait_kind("restarted", "crashy", timeout=10.0))[0]
    # Then it is restarted all the same, and the events wait for the bus
    assert restarted.reason == "exit code 5"
    assert watchdog._bus is not None and watchdog._bus.pending >= 3
