"""Failover of an HA service between real processes: kill -9 and SIGSTOP.

The service (``ha_app``) records each message's effect in the same fenced
transaction as the checkpoint that counts it, so the tests can prove that no
message is lost, none has its effect twice, and the new active resumed from
the last checkpoint (its final count equals the number of effects).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ha_replicas import (
    Replicas,
    effects,
    live_holder,
    pause_outside_writes,
    publisher,
    write_config,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.envelope import Envelope
from stalwart.ha import latest_checkpoint
from stalwart.store.engine import open_engine
from waiting import until

pytestmark = [pytest.mark.slow]

LEASE = 1.0


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[AsyncEngine]:
    engine = await open_engine(store_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_kill_9_fails_over_within_lease_plus_one_second(
    tmp_path: Path, store_url: str, engine: AsyncEngine, unique: str
) -> None:
    bus_url = f"sqlite:///{tmp_path}/bus.db"
    name = f"ha-kill-{unique}"
    replicas = Replicas(write_config(tmp_path, bus_url, store_url, LEASE), name, tmp_path)
    total = 40
    try:
        # Given two replicas, one of them active
        replicas.spawn()
        replicas.spawn()
        await replicas.ready()
        first = await until(lambda: live_holder(engine, replicas.role), 30.0, "an active")
        bus = await publisher(bus_url, name)
        try:
            # And a stream of messages being processed by the active one
            await bus.publish(
                [Envelope.new("ha.app.item", {"n": n}, kind="Item") for n in range(total)]
            )

            async def some_done() -> bool:
                return len(await effects(engine)) >= 10

            await until(some_done, 30.0, "the first effects")
            # When the active replica is killed with SIGKILL
            killed_at = time.time()
            os.kill(first[0], signal.SIGKILL)

            async def successor() -> tuple[int, int, float] | None:
                found = await live_holder(engine, replicas.role)
                return found if found and found[0] != first[0] else None

            pid, token, acquired_at = await until(successor, LEASE + 5.0, "a successor")
            # Then a standby takes over within the lease + 1 s, with a newer token
            assert acquired_at - killed_at <= LEASE + 1.0, replicas.logs()
            assert token > first[1]

            # And every message gets its effect exactly once, across both processes
            async def all_done() -> bool:
                return len(await effects(engine)) >= total

            await until(all_done, 60.0, "every effect")
        finally:
            await bus.close()
        done = await effects(engine)
        assert sorted(n for _, n, _ in done) == list(range(total))
        assert len({message_id for message_id, _, _ in done}) == total
        assert {p for _, _, p in done} == {first[0], pid}
        # And the new active resumed from the last checkpoint: its count carries on
        latest = await latest_checkpoint(engine, replicas.role)
        assert latest is not None
        assert latest.state == {"count": total}
        assert latest.token == token
    finally:
        replicas.close()


async def test_sigstop_past_the_lease_then_sigcont_is_fenced_out(
    tmp_path: Path, store_url: str, engine: AsyncEngine, unique: str
) -> None:
    bus_url = f"sqlite:///{tmp_path}/bus.db"
    name = f"ha-stop-{unique}"
    config = write_config(tmp_path, bus_url, store_url, LEASE)
    replicas = Replicas(config, name, tmp_path, HA_APP_DELAY="1.0")
    try:
        # Given an active replica in the middle of a slow handler, and a standby
        replicas.spawn()
        replicas.spawn()
        await replicas.ready()
        first = await until(lambda: live_holder(engine, replicas.role), 30.0, "an active")
        bus = await publisher(bus_url, name)
        try:
            await bus.publish([Envelope.new("ha.app.item", {"n": 7}, kind="Item")])

            async def started() -> bool:
                return (tmp_path / f"started-7-{first[0]}").exists()

            await until(started, 20.0, "the handler to start")
            # When the active one is paused past its lease
            sqlite_files = [tmp_path / "bus.db"]
            if store_url.startswith("sqlite:"):
                sqlite_files.append(Path(make_url(store_url).database or ""))
            pause_outside_writes(first[0], sqlite_files)
            try:

                async def successor() -> tuple[int, int, float] | None:
                    found = await live_holder(engine, replicas.role)
                    return found if found and found[0] != first[0] else None

                second = await until(successor, LEASE + 5.0, "a successor")

                # And the successor processes the message it was working on
                async def done_by_successor() -> bool:
                    return (tmp_path / f"done-7-{second[0]}").exists()

                await until(done_by_successor, 30.0, "the successor's effect")
            finally:
                # Then, resumed, it is fenced out: its late write raises FencedOut
                os.kill(first[0], signal.SIGCONT)

            async def fenced() -> bool:
                return (tmp_path / f"fenced-{first[0]}").exists()

            await until(fenced, 20.0, "the resumed replica to be fenced out")
        finally:
            await bus.close()
        # And the effect happened once, by the successor, which still holds the role
        assert [(n, p) for _, n, p in await effects(engine)] == [(7, second[0])]
        assert not (tmp_path / f"done-7-{first[0]}").exists()
        holder = await live_holder(engine, replicas.role)
        assert holder is not None and holder[0] == second[0]
        # And the paused process stepped down but lives on as a standby
        assert replicas.procs[0].poll() is None
    finally:
        replicas.close()
