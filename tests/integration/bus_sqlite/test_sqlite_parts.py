"""The embedded bus's parts on their own: URL, group commit, routing cache, wake-ups."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from stalwart.bus import QueueSpec
from stalwart.bus.sqlite import _ops as ops
from stalwart.bus.sqlite import _writer as _sqlite_writer
from stalwart.bus.sqlite._schema import connect, db_path_from_url
from stalwart.bus.sqlite._wake import WakeHub
from stalwart.bus.sqlite._writer import GroupWriter, Op, Touched
from stalwart.errors import BrokerUnavailable, ConfigError


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///rel/bus.db", Path("rel/bus.db")),
        ("sqlite:////abs/dir/bus.db", Path("/abs/dir/bus.db")),
        ("SQLITE:///x.db?mode=rw", Path("x.db")),
    ],
)
def test_bus_urls_name_a_file(url: str, path: Path) -> None:
    assert db_path_from_url(url) == path


@pytest.mark.parametrize(
    "url", ["sqlite://bus.db", "sqlite:///", "amqp:///x", "sqlite:///:memory:"]
)
def test_bad_bus_urls_say_how_to_write_one(url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite:///"):
        db_path_from_url(url)


@pytest.fixture
async def writer(tmp_path: Path) -> GroupWriter:
    touched_log: list[Touched] = []
    conn = connect(tmp_path / "bus.db", "full")
    conn.execute("CREATE TABLE t (v INTEGER NOT NULL)")
    gw = GroupWriter(conn, asyncio.get_running_loop(), touched_log.append, "test-writer")
    gw.start()
    return gw


def _insert(value: int | None) -> Op[int]:
    def run(conn: sqlite3.Connection, touched: Touched) -> int:
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        touched.add("t")
        return 0 if value is None else value

    return run


def _count(conn: sqlite3.Connection, touched: Touched) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])


async def test_concurrent_writes_share_commits(writer: GroupWriter) -> None:
    # Given 500 concurrent submissions
    results = await asyncio.gather(*(writer.submit(_insert(n)) for n in range(500)))
    # Then each got its own result, all rows are there, and far fewer commits ran
    assert results == list(range(500))
    assert await writer.submit(_count) == 500
    assert writer.commits < 100
    await writer.stop()


async def test_one_failing_operation_does_not_sink_its_group(writer: GroupWriter) -> None:
    # Given a group where one operation violates a constraint (NULL into NOT NULL)
    futures = [writer.submit(_insert(n)) for n in (1, None, 3)]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    # Then only that one fails, translated into a bus error, and the others committed
    assert outcomes[0] == 1 and outcomes[2] == 3
    assert "could not commit" in str(outcomes[1])
    assert await writer.submit(_count) == 2
    await writer.stop()


def test_router_follows_the_bindings_version(tmp_path: Path) -> None:
    # Given a router that has read the bindings once
    conn = connect(tmp_path / "bus.db", "normal")
    router = ops.Router()
    touched: Touched = set()
    ops.declare(conn, touched, QueueSpec("a", ("x.*",)), None)
    router.refresh(conn)
    assert router.route("x.y") == ("a",)
    assert router.route("x.y.z") == ()
    # When another connection declares a queue (bumping the version)
    other = connect(tmp_path / "bus.db", "normal")
    ops.declare(other, touched, QueueSpec("b", ("x.#",)), None)
    version = router.version
    # Then the next refresh sees it, and a re-declaration of the same spec changes nothing
    router.refresh(conn)
    assert router.route("x.y.z") == ("b",)
    assert router.route("x.y") == ("a", "b")
    ops.declare(other, touched, QueueSpec("b", ("x.#",)), None)
    router.refresh(conn)
    assert router.version == version + 1
    # And publish times never go backwards, keeping one producer's order
    times = [router.next_visible() for _ in range(100)]
    assert times == sorted(times)


async def test_wake_hub_carries_queue_names_between_hubs(tmp_path: Path) -> None:
    # Given a listening hub and a sending hub on the same bus file
    bus_file = tmp_path / "bus.db"
    listener, sender = WakeHub(bus_file), WakeHub(bus_file)
    listener.open()
    sender.open()
    woken: asyncio.Queue[set[str] | None] = asyncio.Queue()
    listener.listen(asyncio.get_running_loop(), woken.put_nowait)
    # When the sender notifies two queues, then a huge list
    sender.notify({"alpha", "beta"})
    first = await asyncio.wait_for(woken.get(), 5.0)
    sender.notify({f"queue-{n:05d}" for n in range(1000)})
    second = await asyncio.wait_for(woken.get(), 5.0)
    # Then the names arrive, and an oversized list becomes "wake everything"
    assert first == {"alpha", "beta"}
    assert second is None
    listener.close()
    sender.close()
    assert not list(listener.directory.glob("*.sock"))


async def test_a_lock_held_too_long_fails_the_group_with_what_to_do(
    writer: GroupWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given another connection holding the write lock past a short deadline
    monkeypatch.setattr(_sqlite_writer, "_LOCK_DEADLINE", 0.3)
    other = sqlite3.connect(tmp_path / "bus.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    # When three writes are submitted together
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(writer.submit(_insert(n)) for n in range(3)), return_exceptions=True
    )
    # Then all fail at once (no replay one by one) with an actionable error
    assert time.monotonic() - started < 5.0
    assert all(isinstance(o, BrokerUnavailable) for o in outcomes)
    assert "stayed locked" in str(outcomes[0])
    # And once the lock is released, writes go through again
    other.execute("ROLLBACK")
    other.close()
    assert await writer.submit(_insert(7)) == 7
    await writer.stop()
