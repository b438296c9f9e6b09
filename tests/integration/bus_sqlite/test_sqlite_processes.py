"""The embedded bus across real processes: sharing work, kill -9, restart."""

from __future__ import annotations

import asyncio
import collections
import signal
import sys
from pathlib import Path

import pytest
from _procs import Spawn, acked, read_lines, wait_for_lines

from stalwart.bus import QueueSpec
from stalwart.bus.sqlite import SqliteTransport
from stalwart.envelope import Envelope
from stalwart.errors import StalwartError


async def _bus(url: str, *specs: QueueSpec) -> SqliteTransport:
    bus = SqliteTransport(url)
    await bus.start()
    for spec in specs:
        await bus.declare(spec)
    return bus


def _ready(lines: list[str]) -> bool:
    return "READY" in lines


async def test_two_consumer_processes_share_work_without_loss_or_duplicates(
    sqlite_bus_url: str, tmp_path: Path, spawn: Spawn
) -> None:
    # Given a queue with 1,500 messages and two consumer processes
    bus = await _bus(sqlite_bus_url, QueueSpec("shared", ("work.#",)))
    outs = [tmp_path / "a.out", tmp_path / "b.out"]
    for out in outs:
        spawn("consume", sqlite_bus_url, "shared", str(out), "--prefetch", "20")
    for out in outs:
        await asyncio.to_thread(wait_for_lines, out, _ready)
    # When the messages are published while both consume
    for start in range(0, 1500, 50):
        await bus.publish([Envelope.new("work.item", n) for n in range(start, start + 50)])

    def all_done(_: list[str]) -> bool:
        return sum(len(acked(read_lines(o))) for o in outs) >= 1500

    await asyncio.to_thread(wait_for_lines, outs[0], all_done, 60.0)
    # Then every message was acked exactly once, and both processes took part
    per_process = [acked(read_lines(out)) for out in outs]
    counts = collections.Counter(per_process[0] + per_process[1])
    assert sorted(counts) == list(range(1500))
    assert max(counts.values()) == 1
    assert all(per_process)
    stats = await bus.queue_stats("shared")
    assert (stats.ready, stats.inflight, stats.dead) == (0, 0, 0)
    await bus.close()


async def test_kill_9_mid_message_redelivers_to_the_other_consumer(
    sqlite_bus_url: str, tmp_path: Path, spawn: Spawn
) -> None:
    # Given a consumer process stuck in a handler on a queue with a 1 s lease
    bus = await _bus(sqlite_bus_url, QueueSpec("fragile", ("job",), lease=1.0))
    stuck_out, other_out = tmp_path / "stuck.out", tmp_path / "other.out"
    stuck = spawn("consume", sqlite_bus_url, "fragile", str(stuck_out), "--hold")
    await asyncio.to_thread(wait_for_lines, stuck_out, _ready)
    await bus.publish([Envelope.new("job", 42)])
    await asyncio.to_thread(wait_for_lines, stuck_out, lambda ls: "HOLD 42 1" in ls)
    # When it is killed with SIGKILL and another consumer runs
    spawn("consume", sqlite_bus_url, "fragile", str(other_out))
    stuck.send_signal(signal.SIGKILL)
    stuck.wait(timeout=10)
    # Then the other consumer processes the message as attempt 2
    lines = await asyncio.to_thread(wait_for_lines, other_out, lambda ls: bool(acked(ls)))
    assert [line.split()[:2] for line in lines if line[:1].isdigit()] == [["42", "2"]]
    await bus.close()


@pytest.mark.slow
@pytest.mark.parametrize("flag", [[], ["--unsynced"]], ids=["synced", "unsynced"])
async def test_killing_every_process_loses_nothing_published(
    sqlite_bus_url: str, tmp_path: Path, spawn: Spawn, flag: list[str]
) -> None:
    # Given a producer process (publishing with or without fsync) and a consumer
    bus = await _bus(sqlite_bus_url, QueueSpec("crashy", ("c.#",), lease=1.0))
    await bus.close()
    sent, got = tmp_path / "sent.out", tmp_path / "got.out"
    producer = spawn("produce", sqlite_bus_url, "c.x", str(sent), "100000", *flag)
    consumer = spawn("consume", sqlite_bus_url, "crashy", str(got))
    await asyncio.to_thread(wait_for_lines, sent, lambda ls: len(ls) > 300)
    # When both are killed with SIGKILL mid-stream
    producer.send_signal(signal.SIGKILL)
    consumer.send_signal(signal.SIGKILL)
    producer.wait(timeout=10)
    consumer.wait(timeout=10)
    confirmed = {int(line) for line in read_lines(sent) if line.isdigit()}
    # And a consumer is started again
    spawn("consume", sqlite_bus_url, "crashy", str(got))

    def caught_up(lines: list[str]) -> bool:
        return confirmed <= set(acked(lines))

    # Then every message whose publish returned is consumed
    await asyncio.to_thread(wait_for_lines, got, caught_up, 60.0)
    assert len(confirmed) >= 300  # the 301 lines waited for include READY


async def test_a_dead_processs_ephemeral_queue_is_reaped(
    sqlite_bus_url: str, tmp_path: Path
) -> None:
    # Given an ephemeral queue declared by a process that then died (kill -9)
    script = (
        "import asyncio, os, signal\n"
        "from stalwart.bus import QueueSpec\n"
        "from stalwart.bus.sqlite import SqliteTransport\n"
        "async def main():\n"
        f"    bus = SqliteTransport({sqlite_bus_url!r})\n"
        "    await bus.start()\n"
        "    await bus.declare(QueueSpec('tail-orphan', ('#',), ephemeral=True))\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    assert await asyncio.wait_for(proc.wait(), 30.0) == -signal.SIGKILL
    # When another process opens the bus
    bus = await _bus(sqlite_bus_url)
    # Then the orphaned queue is gone, and stops collecting copies
    with pytest.raises(StalwartError, match="not declared"):
        await bus.queue_stats("tail-orphan")
    await bus.close()
