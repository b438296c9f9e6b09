"""Idle consumers of the embedded bus cost nothing yet wake at once, across processes."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import psutil
from _procs import Spawn, wait_for_lines

from stalwart.bus import QueueSpec
from stalwart.bus.sqlite import SqliteTransport
from stalwart.envelope import Envelope


async def test_an_idle_consumer_process_uses_almost_no_cpu_and_wakes_quickly(
    sqlite_bus_url: str, tmp_path: Path, spawn: Spawn
) -> None:
    # Given a consumer process waiting on an empty queue
    bus = SqliteTransport(sqlite_bus_url)
    await bus.start()
    await bus.declare(QueueSpec("idle", ("idle.#",)))
    out = tmp_path / "idle.out"
    proc = spawn("consume", sqlite_bus_url, "idle", str(out))
    await asyncio.to_thread(wait_for_lines, out, lambda ls: "READY" in ls)
    await asyncio.sleep(0.5)  # past start-up work, into the idle wait
    # When its CPU use is measured over 2 s
    meter = psutil.Process(proc.pid)
    meter.cpu_percent(None)
    await asyncio.sleep(2.0)
    busy = meter.cpu_percent(None)
    # Then it is well under 5 % of a core
    assert busy < 5.0, f"idle consumer used {busy:.1f}% CPU"
    # And when a message is published it is picked up well within the fallback poll
    sent = time.time()
    await bus.publish([Envelope.new("idle.ping", 1)])
    lines = await asyncio.to_thread(wait_for_lines, out, lambda ls: len(ls) > 1, 10.0)
    received = float(lines[1].split()[2])
    assert received - sent < 0.5
    await bus.close()


async def test_wake_ups_work_when_the_bus_path_is_too_long_for_a_socket_address(
    tmp_path: Path,
) -> None:
    # Given a bus file deep enough that its socket paths exceed the 108-byte limit
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    url = f"sqlite:///{deep}/bus.db"
    assert len(str(deep / "bus.db.wake" / "1234567-abcdef01.sock")) > 108
    consumer_side, producer_side = SqliteTransport(url), SqliteTransport(url)
    await consumer_side.start()
    await producer_side.start()
    await consumer_side.declare(QueueSpec("deep", ("deep.x",)))
    deliveries = consumer_side.consume("deep", 5)
    first = asyncio.ensure_future(anext(deliveries))
    await asyncio.sleep(0.3)  # the consumer is now idle, sleeping on its event
    # When the other transport (its own connection and socket) publishes
    sent = time.monotonic()
    await producer_side.publish([Envelope.new("deep.x", "hello")])
    delivery = await asyncio.wait_for(first, 10.0)
    # Then the datagram woke the consumer well before its 1 s fallback poll
    assert time.monotonic() - sent < 0.5
    assert delivery.envelope is not None and delivery.envelope.body == "hello"
    await delivery.ack()
    await producer_side.close()
    await consumer_side.close()


async def test_a_stale_wake_up_socket_is_removed(sqlite_bus_url: str) -> None:
    # Given a socket file left behind by a consumer process that died
    bus = SqliteTransport(sqlite_bus_url)
    await bus.start()
    await bus.declare(QueueSpec("q", ("s.x",)))
    stale = bus._hub.directory / f"{os.getpid() + 100000}-dead.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(stale))
    sock.close()
    assert stale.exists()
    # When a publish notifies the consuming processes
    await bus.publish([Envelope.new("s.x", 1)])
    # Then the stale socket is cleaned away
    assert not stale.exists()
    await bus.close()
