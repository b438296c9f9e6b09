"""The faults: each a small class that injects one failure and heals it.

``aim()`` finds the target and touches nothing, raising :class:`Unavailable`
when it is not there (the campaign records the fault as skipped); the
campaign then records the fault in the store *before* ``inject()`` strikes,
so that a fault that stops the store cannot hide its own record.
``inject()`` returns a one-line account of what it did. ``heal()`` undoes
what ``inject()`` did and is safe to call whatever state the fault reached:
the campaign calls it in a ``finally``. ``restarts`` is a glob of the
programs whose restarts by the watchdog the fault explains (``pipeline-eu``;
``*-eu`` for a site; ``*`` for every program, after the watchdog or the
broker was lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

import psutil

from stalwart.chaos.broker import HubBroker
from stalwart.chaos.schedule import FaultKind, Planned
from stalwart.chaos.sites import Sites
from stalwart.chaos.system import LEAKER, DemoSystem
from stalwart.dev.postgres import PrivatePostgres
from stalwart.dev.rabbitmq import RabbitNode
from stalwart.integrity import Catalog, ScrubOptions, scrub_site
from stalwart.integrity.ops import Recorder

__all__ = ["BALLAST", "Fault", "Lab", "Unavailable", "make_fault"]

BALLAST: Final = ".chaos-ballast"  # the file that fills a site's disk
_DEATH_WAIT: Final = 10.0  # seconds a SIGKILLed watchdog may take to die


class Unavailable(Exception):
    """The fault cannot strike now (its target is missing); the reason says why."""


@dataclass
class Lab:
    """What faults act on: the system, and a random source for their details."""

    system: DemoSystem
    rng: random.Random
    disks: frozenset[str] = frozenset()  # sites whose archive is a disk of its own
    sites: Sites | None = None  # the simulated sites' namespaces and links
    broker: HubBroker | None = None  # the broker cluster the sites reach over their links
    postgres: PrivatePostgres | None = None  # the store, when it is a server of its own


class Fault(ABC):
    """One planned fault, injected once and healed once."""

    kind: ClassVar[FaultKind]

    def __init__(self, planned: Planned, lab: Lab) -> None:
        self.planned = planned
        self.lab = lab
        self.restarts: str | None = None
        self.pid = 0

    async def aim(self) -> None:
        """Find the target's process (the default); raise Unavailable if it is not running."""
        pid = await self.lab.system.pid(self.planned.target)
        if pid is None:
            raise Unavailable(f"{self.planned.target} is not running")
        self.pid = pid

    @abstractmethod
    async def inject(self) -> str: ...

    @abstractmethod
    async def heal(self) -> str: ...


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


class Kill(Fault):
    """SIGKILL: the process dies without cleaning up; the watchdog must restart it."""

    kind = FaultKind.KILL

    async def inject(self) -> str:
        self.restarts = _program_of(self.planned.target)
        _signal(self.pid, signal.SIGKILL)
        return f"SIGKILL pid {self.pid}"

    async def heal(self) -> str:
        return "nothing to undo: the watchdog restarts it"


class KillWatchdog(Fault):
    """SIGKILL the watchdog: its programs die with it; the campaign starts it again,
    as an init system would."""

    kind = FaultKind.KILL

    async def inject(self) -> str:
        self.restarts = "*"
        _signal(self.pid, signal.SIGKILL)
        return f"SIGKILL watchdog pid {self.pid}"

    async def heal(self) -> str:
        system = self.lab.system
        # The kill takes a moment: a heal that looked at once would find it running
        # and leave the demo dead for the rest of the campaign.
        if not await asyncio.to_thread(system.watchdog_gone, _DEATH_WAIT):
            return f"the watchdog was still running {_DEATH_WAIT:.0f}s after SIGKILL"
        system.stop()  # whatever survived it
        system.start()
        return "started `stalwart up --demo` again"


class Stop(Fault):
    """SIGSTOP: the process hangs (no heartbeat, no progress) until SIGCONT at heal."""

    kind = FaultKind.STOP

    async def inject(self) -> str:
        self.restarts = _program_of(self.planned.target)
        _signal(self.pid, signal.SIGSTOP)
        return f"SIGSTOP pid {self.pid}"

    async def heal(self) -> str:
        _signal(self.pid, signal.SIGCONT)
        return f"SIGCONT pid {self.pid}"


class Leak(Fault):
    """The leaker grows until the watchdog stops it for its memory; heal kills it if the
    watchdog did not."""

    kind = FaultKind.LEAK

    async def inject(self) -> str:
        self.restarts = LEAKER
        _signal(self.pid, signal.SIGUSR1)
        return f"SIGUSR1 (start leaking) pid {self.pid}"

    async def heal(self) -> str:
        if not psutil.pid_exists(self.pid):
            return "the watchdog had stopped it"
        _signal(self.pid, signal.SIGKILL)
        return f"still leaking: SIGKILL pid {self.pid}"


class SlowPipeline(Fault):
    """The pipeline step and its batch jobs run a fifth of the time (SIGSTOP 0.8 s,
    SIGCONT 0.2 s), as on an overloaded node."""

    kind = FaultKind.SLOW_PIPELINE

    def __init__(self, planned: Planned, lab: Lab) -> None:
        super().__init__(planned, lab)
        self._task: asyncio.Task[None] | None = None

    async def inject(self) -> str:
        self.restarts = self.planned.target
        self._task = asyncio.create_task(self._throttle(self.pid))
        return f"throttled pid {self.pid} to 20 % of the time"

    async def _throttle(self, pid: int) -> None:
        while True:
            for proc in _with_children(pid):
                _signal(proc, signal.SIGSTOP)
            await asyncio.sleep(0.8)
            for proc in _with_children(pid):
                _signal(proc, signal.SIGCONT)
            await asyncio.sleep(0.2)

    async def heal(self) -> str:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._task is None:
            return "nothing throttled"
        for proc in _with_children(self.pid):
            _signal(proc, signal.SIGCONT)
        return f"full speed again for pid {self.pid}"


class DiskFull(Fault):
    """The site's archive disk is filled to the last byte; heal frees it."""

    kind = FaultKind.DISK_FULL

    def _ballast(self) -> Path:
        return self.lab.system.spec.archive(self.planned.target) / BALLAST

    async def aim(self) -> None:
        if self.planned.target not in self.lab.disks:
            raise Unavailable(f"{self.planned.target}'s archive is not a disk of its own")

    async def inject(self) -> str:
        ballast = self._ballast()
        filled = await asyncio.to_thread(_fill, ballast)
        return f"{filled / 2**20:.0f} MiB of ballast in {ballast.parent}"

    async def heal(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            self._ballast().unlink()
            return "ballast deleted"
        return "no ballast"


def _fill(path: Path) -> int:
    """Write ``path`` until its disk has no space left; return its size."""
    chunk = b"\0" * 2**20
    with open(path, "wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        return os.fstat(out.fileno()).st_size


class DamagedReplica(Fault):
    """The replica most recently catalogued good at the site (just landed, or just
    verified by a scrub) is damaged on its disk (bytes flipped, or cut short); heal
    scrubs the site, which must find and repair it."""

    kind = FaultKind.CORRUPT_TRANSFER
    truncate = False

    def __init__(self, planned: Planned, lab: Lab) -> None:
        super().__init__(planned, lab)
        self._path: Path | None = None
        self._damaged = False

    async def aim(self) -> None:
        site = self.planned.target
        catalog = Catalog(self.lab.system.engine)
        path = await catalog.newest_good_replica(site, str(self.lab.system.spec.archive(site)))
        if path is None:
            raise Unavailable(f"no verified replica transferred to {site} yet")
        self._path = Path(path)

    async def inject(self) -> str:
        assert self._path is not None, "aim() first"
        what = await asyncio.to_thread(_damage, self._path, self.truncate, self.lab.rng)
        self._damaged = True
        return what

    async def heal(self) -> str:
        if not self._damaged:
            return "nothing damaged"
        site = self.planned.target
        catalog = await Catalog.open(self.lab.system.spec.store)
        try:
            report = await scrub_site(
                catalog, Recorder(site=site, catalog=catalog), ScrubOptions(site=site)
            )
        finally:
            await catalog.close()
        counts = report.counts
        return (
            f"scrubbed {site}: checked={counts.checked} repaired={counts.repaired} "
            f"still broken={len(report.still_broken)}"
        )


def _damage(path: Path, truncate: bool, rng: random.Random) -> str:
    size = path.stat().st_size
    if size == 0:
        return f"{path} was empty: nothing to damage"
    if truncate:
        os.truncate(path, size // 2)
        return f"cut {path} from {size} to {size // 2} bytes"
    offsets = sorted({rng.randrange(size) for _ in range(3)})
    with open(path, "r+b") as f:
        for offset in offsets:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0xFF]))
    return f"flipped bytes {offsets} of {path}"


class TruncatedReplica(DamagedReplica):
    kind = FaultKind.TRUNCATE_TRANSFER
    truncate = True


class WanCut(Fault):
    """The site's link goes down: its programs reach neither the broker nor the other
    sites until the heal brings it up."""

    kind = FaultKind.WAN_CUT

    async def aim(self) -> None:
        if self.lab.sites is None:
            raise Unavailable("no simulated sites (network namespaces) in this campaign")
        self.restarts = f"*-{self.planned.target}"  # heartbeats cannot get out

    async def inject(self) -> str:
        assert self.lab.sites is not None
        self.lab.sites.cut(self.planned.target)
        return f"link of {self.lab.sites.netns(self.planned.target)} down"

    async def heal(self) -> str:
        assert self.lab.sites is not None
        self.lab.sites.mend(self.planned.target)
        return "link up"


class _BrokerFault(Fault):
    async def aim(self) -> None:
        if self.lab.broker is None:
            raise Unavailable("the campaign runs on the embedded bus, not a broker")
        self.restarts = "*"  # heartbeats and work wait while clients move to another node

    @property
    def _node(self) -> RabbitNode:
        assert self.lab.broker is not None
        return self.lab.broker.node(self.planned.target)


class BrokerNodeLoss(_BrokerFault):
    """SIGKILL of one broker node's Erlang VM; the heal starts it again."""

    kind = FaultKind.BROKER_NODE_LOSS

    async def inject(self) -> str:
        await asyncio.to_thread(self._node.kill)
        return f"SIGKILL of RabbitMQ node {self._node.node}"

    async def heal(self) -> str:
        began = time.monotonic()
        await asyncio.to_thread(self._node.start)
        return f"node up again after {time.monotonic() - began:.1f}s"


class BrokerPartition(_BrokerFault):
    """One broker node's address leaves the bridge: no site reaches it, nor the other
    nodes (their links to it stall)."""

    kind = FaultKind.BROKER_PARTITION

    async def inject(self) -> str:
        assert self.lab.sites is not None
        self.lab.sites.isolate(self._node.spec.host)
        return f"{self._node.node} cut off: {self._node.spec.host} removed from the bridge"

    async def heal(self) -> str:
        assert self.lab.sites is not None
        self.lab.sites.restore(self._node.spec.host)
        return "address back"


class PostgresRestart(Fault):
    """The store's PostgreSQL stops at once (``-m immediate``: every connection cut, no
    checkpoint) and starts again at the heal."""

    kind = FaultKind.POSTGRES_RESTART

    async def aim(self) -> None:
        if self.lab.postgres is None:
            raise Unavailable("the store is not a PostgreSQL server of the campaign's own")
        self.restarts = "*"  # anything may wait on the store for longer than its deadline

    async def inject(self) -> str:
        assert self.lab.postgres is not None
        await asyncio.to_thread(self.lab.postgres.stop, "immediate")
        return f"pg_ctl stop -m immediate ({self.lab.postgres.host}:{self.lab.postgres.port})"

    async def heal(self) -> str:
        assert self.lab.postgres is not None
        began = time.monotonic()
        await asyncio.to_thread(self.lab.postgres.start)
        return f"PostgreSQL up again after {time.monotonic() - began:.1f}s"


def _with_children(pid: int) -> list[int]:
    try:
        proc = psutil.Process(pid)
        return [pid, *(child.pid for child in proc.children(recursive=True))]
    except psutil.Error:
        return []


def _program_of(target: str) -> str:
    """The program the watchdog will report restarting: the HA leader is a dispatcher."""
    return "dispatcher" if target == "ha-leader" else target


_FAULTS: Final[dict[FaultKind, type[Fault]]] = {
    FaultKind.KILL: Kill,
    FaultKind.STOP: Stop,
    FaultKind.LEAK: Leak,
    FaultKind.SLOW_PIPELINE: SlowPipeline,
    FaultKind.DISK_FULL: DiskFull,
    FaultKind.CORRUPT_TRANSFER: DamagedReplica,
    FaultKind.TRUNCATE_TRANSFER: TruncatedReplica,
    FaultKind.WAN_CUT: WanCut,
    FaultKind.BROKER_NODE_LOSS: BrokerNodeLoss,
    FaultKind.BROKER_PARTITION: BrokerPartition,
    FaultKind.POSTGRES_RESTART: PostgresRestart,
}


def make_fault(planned: Planned, lab: Lab) -> Fault:
    """The fault object for one entry of the schedule."""
    if planned.kind is FaultKind.KILL and planned.target == "watchdog":
        return KillWatchdog(planned, lab)
    return _FAULTS[planned.kind](planned, lab)
