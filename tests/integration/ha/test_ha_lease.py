"""Leases and fencing tokens against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stalwart.errors import FencedOut, StoreUnavailable
from stalwart.ha import status
from stalwart.ha._schema import checkpoints, leases
from stalwart.ha.checkpoint import latest_checkpoint, save_checkpoint
from stalwart.ha.lease import Lease, fenced_write, request_step_down
from stalwart.store.engine import make_engine
from waiting import until

TTL = 1.0


async def _wait_until_acquired(lease: Lease, deadline: float) -> float:
    """Seconds until ``lease`` could be acquired, trying every 50 ms for ``deadline`` s."""
    start = time.monotonic()
    await until(lease.acquire, deadline, f"{lease.holder} to acquire the lease")
    return time.monotonic() - start


async def test_only_one_holder_and_tokens_grow(engine: AsyncEngine, unique: str) -> None:
    # Given two contenders for one role
    a = Lease(engine, f"role-{unique}", ttl=TTL, holder="a")
    b = Lease(engine, f"role-{unique}", ttl=TTL, holder="b")
    # When a acquires first
    assert await a.acquire()
    # Then b cannot while a's lease is live, and a's token is the first
    assert not await b.acquire()
    assert a.token == 1
    assert b.token is None
    # When a stops renewing, b acquires once the database's clock passes the expiry
    waited = await _wait_until_acquired(b, deadline=TTL + 2.0)
    assert waited >= TTL * 0.5
    assert b.token == 2
    # And a's local deadline had already passed: it knows it is no longer holder
    assert not a.held()
    assert not await a.renew()


async def test_renewal_keeps_the_lease(engine: AsyncEngine, unique: str) -> None:
    # Given a holder that renews every third of its lease
    a = Lease(engine, f"role-{unique}", ttl=TTL, holder="a")
    b = Lease(engine, f"role-{unique}", ttl=TTL, holder="b")
    assert await a.acquire()
    # When it renews for two lease times
    end = time.monotonic() + 2 * TTL
    while time.monotonic() < end:
        assert await a.renew()
        # Then nobody else can take it
        assert not await b.acquire()
        await asyncio.sleep(TTL / 3)
    assert a.token == 1


async def test_stale_token_is_fenced_and_writes_nothing(engine: AsyncEngine, unique: str) -> None:
    role = f"role-{unique}"
    a = Lease(engine, role, ttl=TTL, holder="a")
    b = Lease(engine, role, ttl=TTL, holder="b")
    # Given a checkpoint under a's token, then b takes over after a expires
    assert await a.acquire()
    old = a.token
    assert old is not None
    assert await save_checkpoint(engine, role, old, {"n": 1}, holder="a") == 1
    await _wait_until_acquired(b, deadline=TTL + 2.0)
    # When the deposed holder writes with its stale token
    with pytest.raises(FencedOut, match="stale"):
        await save_checkpoint(engine, role, old, {"n": 999}, holder="a")

    async def write(conn: AsyncConnection) -> None:
        await conn.execute(
            insert(checkpoints).values(
                role=role, version=99, token=old, holder="a", created_at=0.0, state={}
            )
        )

    with pytest.raises(FencedOut):
        await fenced_write(engine, role, old, write)
    # Then the state is the last one written by a valid holder, and nothing else landed
    latest = await latest_checkpoint(engine, role)
    assert latest is not None
    assert (latest.version, latest.state, latest.token) == (1, {"n": 1}, old)
    # And the new holder writes the next version
    assert await b.fenced(lambda conn: _count(conn, role)) == 1
    assert await save_checkpoint(engine, role, b.token or 0, {"n": 2}, holder="b") == 2


async def _count(conn: AsyncConnection, role: str) -> int:
    rows = await conn.execute(select(checkpoints.c.version).where(checkpoints.c.role == role))
    return len(rows.all())


async def test_checkpoints_keep_only_the_newest(engine: AsyncEngine, unique: str) -> None:
    role = f"role-{unique}"
    a = Lease(engine, role, ttl=5.0)
    assert await a.acquire()
    # Given five checkpoints with keep=2
    for n in range(5):
        await save_checkpoint(engine, role, a.token or 0, {"n": n}, keep=2)
    # Then only the last two versions remain and the latest is restored
    assert await a.fenced(lambda conn: _count(conn, role)) == 2
    latest = await latest_checkpoint(engine, role)
    assert latest is not None and latest.state == {"n": 4} and latest.version == 5
    assert await latest_checkpoint(engine, f"other-{unique}") is None


async def test_release_hands_over_at_once(engine: AsyncEngine, unique: str) -> None:
    a = Lease(engine, f"role-{unique}", ttl=30.0, holder="a")
    b = Lease(engine, f"role-{unique}", ttl=30.0, holder="b")
    assert await a.acquire()
    # When a steps down voluntarily
    assert await a.release()
    # Then b acquires without waiting for the 30 s lease, and a no longer holds
    assert await b.acquire()
    assert not a.held()
    assert b.token == 2


async def test_step_down_request_is_honoured_by_the_holder(
    engine: AsyncEngine, unique: str
) -> None:
    role = f"role-{unique}"
    a = Lease(engine, role, ttl=30.0, holder="a")
    b = Lease(engine, role, ttl=30.0, holder="b")
    assert await a.acquire()
    # When an operator asks the holder to step down
    assert await request_step_down(engine, role) == 1
    # Then nobody may take the role until the holder lets go (no two actives)
    assert not await b.acquire()
    # And the holder's next renewal fails, so it stops and releases
    assert not await a.renew()
    assert await a.release(1)
    assert await b.acquire()
    assert await request_step_down(engine, f"none-{unique}") is None


async def test_local_deadline_passes_without_the_database(tmp_path: Path, unique: str) -> None:
    # Given a lease held, then its database becomes unreachable
    good = make_engine(f"sqlite:///{tmp_path}/store.db")
    gone = make_engine("postgresql://postgres@127.0.0.1:1/nothing")
    lease = Lease(good, f"role-{unique}", ttl=TTL)
    try:
        assert await lease.acquire()
        lease.engine = gone
        # When renewals fail
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await lease.renew()
        # Then the holder still knows its deadline and stops acting at it
        assert lease.held()
        await asyncio.sleep(TTL)
        assert not lease.held()
        assert lease.token is None
    finally:
        await good.dispose()
        await gone.dispose()


def test_bad_ttl_is_refused() -> None:
    engine = make_engine("sqlite:///:memory:")
    with pytest.raises(ValueError, match="ttl"):
        Lease(engine, "x", ttl=0)


async def test_lease_row_records_the_database_time(engine: AsyncEngine, unique: str) -> None:
    a = Lease(engine, f"role-{unique}", ttl=TTL)
    assert await a.acquire()
    async with engine.connect() as conn:
        row = (await conn.execute(select(leases).where(leases.c.role == a.role))).one()
    # The expiry is the database's now + ttl, close to wall-clock epoch seconds
    assert abs(row.expires_at - row.acquired_at - TTL) < 0.01
    assert abs(row.acquired_at - time.time()) < 5.0


async def test_status_shows_the_active_replica_and_its_standbys(
    engine: AsyncEngine, unique: str
) -> None:
    role = f"role-{unique}"
    a = Lease(engine, role, ttl=30.0, holder="a")
    b = Lease(engine, role, ttl=30.0, holder="b")
    # Given a holds and b has tried to acquire
    assert await a.acquire()
    assert not await b.acquire()

    async def seen() -> list[tuple[str, str]]:
        shown = await status(engine)
        return [(r.holder, r.state) for r in shown.replicas if r.role == role]

    # Then status shows a active and b standing by
    assert await seen() == [("a", "active"), ("b", "standby")]
    # When a steps down and b takes over, Then the roles swap
    assert await a.release()
    assert await b.acquire()
    assert await seen() == [("a", "standby"), ("b", "active")]
