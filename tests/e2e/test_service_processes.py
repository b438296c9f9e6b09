"""Services as real processes on the embedded bus: sharing work, broadcast,
kill -9 mid-handler, restart of everything, and a long handler kept alive by
lease renewal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from stalwart.bus import open_transport
from stalwart.envelope import Envelope
from waiting import until_sync

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent / "services"


class Cluster:
    """Starts ``stalwart run`` processes on one bus and reads their effects."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bus_url = f"sqlite:///{tmp}/bus.db"
        self.effects = tmp / "effects.log"
        self.started = tmp / "started.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        (tmp / "stalwart.toml").write_text("")

    def start(self, target: str, lease: float = 2.0) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "STALWART_BUS_URL": self.bus_url,
            "STALWART_STORE_URL": f"sqlite:///{self.tmp}/store.db",
            "STALWART_CONFIG": str(self.tmp / "stalwart.toml"),
            "EFFECTS": str(self.effects),
            "STARTED": str(self.started),
            "LEASE": str(lease),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "stalwart", "run", f"proc_services:{target}"],
            env=env,
            cwd=self.tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.procs.append(proc)
        return proc

    def lines(self, path: Path) -> list[tuple[str, int]]:
        if not path.exists():
            return []
        return [(p[0], int(p[1])) for p in (line.split() for line in path.read_text().splitlines())]

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        """Wait for ``predicate``, failing at once if a service died on its own."""

        def alive_and_done() -> bool:
            for proc in self.procs:
                if proc.poll() not in (None, -9, -15, 0):
                    raise AssertionError(f"a service died: {proc.stderr.read().decode()[-2000:]}")
            return predicate()

        until_sync(alive_and_done, timeout, what)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:  # read only when a service died; not left to leak
                proc.stderr.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


def declared(url: str, queue: str) -> bool:
    """True once a service process has declared ``queue`` on the bus."""

    async def go() -> bool:
        transport = open_transport(url)
        await transport.start()
        try:
            return queue in await transport.queues()
        finally:
            await transport.close()

    return Path(url.removeprefix("sqlite:///")).exists() and asyncio.run(go())


def publish(url: str, bodies: list[dict]) -> list[str]:
    async def go() -> list[str]:
        transport = open_transport(url)
        await transport.start()
        try:
            envs = [Envelope.new("work.item", body) for body in bodies]
            await transport.publish(envs)
            return [e.id for e in envs]
        finally:
            await transport.close()

    return asyncio.run(go())


def test_two_instances_share_work_and_two_services_each_get_a_copy(cluster: Cluster) -> None:
    # Given two instances of "worker" and one of "audit"
    a, b = cluster.start("worker"), cluster.start("worker")
    cluster.start("audit")
    cluster.wait_for(lambda: declared(cluster.bus_url, "worker"), 30, "the worker queue")
    cluster.wait_for(lambda: declared(cluster.bus_url, "audit"), 30, "the audit queue")
    # When 300 messages are published
    ids = publish(cluster.bus_url, [{"n": i} for i in range(300)])
    cluster.wait_for(lambda: len(cluster.lines(cluster.effects)) >= 600, 60, "all effects")
    effects = cluster.lines(cluster.effects)
    # Then every message was handled once by worker and once by audit
    per_id = Counter(mid for mid, _ in effects)
    assert set(per_id) == set(ids) and set(per_id.values()) == {2}
    # And both worker instances took a share
    pids = Counter(pid for _, pid in effects)
    assert pids[a.pid] > 0 and pids[b.pid] > 0


def test_kill_9_mid_handler_hands_the_message_to_the_other_instance(cluster: Cluster) -> None:
    a = cluster.start("worker", lease=1.0)
    cluster.wait_for(lambda: declared(cluster.bus_url, "worker"), 30, "the worker queue")
    # Given one instance in the middle of a long handler
    [mid] = publish(cluster.bus_url, [{"sleep": 5}])
    cluster.wait_for(
        lambda: any(m == mid for m, _ in cluster.lines(cluster.started)), 20, "the handler to start"
    )
    b = cluster.start("worker", lease=1.0)
    # When that instance is killed with SIGKILL
    a.send_signal(signal.SIGKILL)
    a.wait(5)
    # Then after the lease the other instance processes the message
    cluster.wait_for(
        lambda: any(m == mid for m, _ in cluster.lines(cluster.effects)),
        30,
        "redelivery to the survivor",
    )
    assert [pid for m, pid in cluster.lines(cluster.effects) if m == mid] == [b.pid]


def test_restart_of_every_process_loses_nothing(cluster: Cluster) -> None:
    cluster.start("worker"), cluster.start("worker")
    cluster.wait_for(lambda: declared(cluster.bus_url, "worker"), 30, "the worker queue")
    # Given 400 messages in flight, and every process killed -9 halfway
    ids = publish(cluster.bus_url, [{"sleep": 0.01} for _ in range(400)])
    cluster.wait_for(lambda: len(cluster.lines(cluster.effects)) > 50, 30, "some progress")
    for proc in cluster.procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
    # When they are all started again
    cluster.start("worker"), cluster.start("worker")
    # Then every message is eventually processed: nothing lost
    done = lambda: set(ids) <= {m for m, _ in cluster.lines(cluster.effects)}  # noqa: E731
    cluster.wait_for(done, 60, "all 400 messages")


def test_long_handler_renewing_its_lease_is_not_redelivered(cluster: Cluster) -> None:
    # Given a lease of 1 s and a handler that takes 4 s
    cluster.start("worker", lease=1.0)
    cluster.start("worker", lease=1.0)
    cluster.wait_for(lambda: declared(cluster.bus_url, "worker"), 30, "the worker queue")
    [mid] = publish(cluster.bus_url, [{"sleep": 4}])
    cluster.wait_for(
        lambda: any(m == mid for m, _ in cluster.lines(cluster.effects)),
        30,
        "the long handler to finish",
    )
    # Then it started exactly once: the other instance never got it
    assert [m for m, _ in cluster.lines(cluster.started)].count(mid) == 1
