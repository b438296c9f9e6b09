"""What a killed campaign left behind (namespace, bridge, site disk, demo process, the
broker's epmd, PostgreSQL) is removed by the next campaign's reap; what a live
campaign holds is not touched. Root only: it makes real namespaces and mounts."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from stalwart.chaos.leftovers import Record, reap
from stalwart.dev.ports import free_port, port_open
from stalwart.dev.rabbitmq import ClusterState, NodeSpec
from waiting import until_sync

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=20)


@dataclass
class Campaign:
    """What one campaign would have made: real namespace, bridge, disk and processes."""

    tag: str
    root: Path
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def ns(self) -> str:
        return f"{self.tag}-t"

    @property
    def bridge(self) -> str:
        return f"{self.tag}-br"

    @property
    def disk(self) -> Path:
        return self.root / "archive t"  # a space: mountinfo writes it escaped

    @property
    def config(self) -> Path:
        return self.root / "run" / "stalwart.toml"

    @property
    def broker(self) -> Path:
        return self.root / "stalwart-chaos-rmq-t"

    @property
    def postgres(self) -> Path:
        return self.root / "stalwart-chaos-pg-t"

    def build(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "netns", "add", self.ns)
        _run("ip", "link", "add", self.ns, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
        _run("ip", "link", "set", self.ns, "master", self.bridge, "up")
        self.disk.mkdir(parents=True)
        _run("mount", "-t", "tmpfs", "-o", "size=1m", "chaos-t", str(self.disk))
        # the demo: a process with the campaign's settings in its environment
        env = {**os.environ, "STALWART_CONFIG": str(self.config)}
        self._spawn(["sleep", "120"], env=env)
        # the broker's home, with its epmd running (the node itself is not started)
        epmd_port = free_port()
        node = NodeSpec("chaos-t", "127.0.0.1", free_port(), free_port(), str(self.broker / "n"))
        self.broker.mkdir()
        ClusterState(str(self.broker), epmd_port, (node,)).save()
        self._spawn(["epmd", "-port", str(epmd_port), "-address", "127.0.0.1"])
        until_sync(lambda: port_open(epmd_port), 10.0, "the broker's epmd to listen")
        # PostgreSQL: a postmaster.pid naming a process whose working directory is data/
        data = self.postgres / "data"
        data.mkdir(parents=True)
        postmaster = self._spawn(["sleep", "120"], cwd=data)
        (data / "postmaster.pid").write_text(f"{postmaster.pid}\n{data}\n")

    def _spawn(
        self, command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)
        self.children.append(child)
        return child

    def record(self, pid: int, started: float) -> Record:
        return Record(
            self.tag,
            pid,
            started,
            config=str(self.config),
            namespaces=[self.ns],
            bridge=self.bridge,
            mounts=[str(self.disk)],
            broker=str(self.broker),
            postgres=str(self.postgres),
        )

    def present(self) -> dict[str, bool]:
        return {
            "namespace": Path("/run/netns", self.ns).exists(),
            "veth": Path("/sys/class/net", self.ns).exists(),
            "bridge": Path("/sys/class/net", self.bridge).exists(),
            "disk": os.path.ismount(self.disk),
            "broker home": self.broker.exists(),
            "postgres root": self.postgres.exists(),
            **{f"process {c.pid}": c.poll() is None for c in self.children},
        }

    def remove(self) -> None:
        for child in self.children:
            child.kill()
            with contextlib.suppress(ChildProcessError):
                child.wait()
        subprocess.run(["umount", "-l", str(self.disk)], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


@pytest.fixture
def campaigns(tmp_path: Path) -> Iterator[tuple[Campaign, Campaign]]:
    first, second = random.sample(range(16**4), 2)
    dead = Campaign(f"cx{first:04x}", tmp_path / "dead")
    live = Campaign(f"cx{second:04x}", tmp_path / "live")
    try:
        dead.build()
        live.build()
        yield dead, live
    finally:
        dead.remove()
        live.remove()


def test_a_killed_campaigns_leftovers_go_and_a_live_ones_stay(
    tmp_path: Path, campaigns: tuple[Campaign, Campaign]
) -> None:
    dead, live = campaigns
    # Given a record owned by a process that has exited, and one owned by this process
    owner = subprocess.Popen(["sleep", "60"])
    started = psutil.Process(owner.pid).create_time()
    owner.kill()
    owner.wait()
    records = tmp_path / "records"
    records.mkdir()
    (records / f"{dead.tag}.json").write_text(dead.record(owner.pid, started).dumps())
    me = psutil.Process()
    (records / f"{live.tag}.json").write_text(live.record(me.pid, me.create_time()).dumps())
    assert all(dead.present().values()) and all(live.present().values())

    # When the next campaign reaps
    reaped = reap(records)

    # Then everything the dead owner's record listed is gone, and so is its record
    assert not any(dead.present().values()), dead.present()
    assert not (records / f"{dead.tag}.json").exists()
    assert reaped == [
        f"{dead.tag} (pid {owner.pid}): 1 demo processes, RabbitMQ node, PostgreSQL, "
        f"namespaces {dead.ns}, bridge {dead.bridge}, 1 disks"
    ]
    # ... and the live campaign's things and record are untouched
    assert all(live.present().values()), live.present()
    assert (records / f"{live.tag}.json").exists()
