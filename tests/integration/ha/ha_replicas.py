"""Child-process replicas of ``ha_app`` for the failover and fencing tests."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.bus import Transport, open_transport
from stalwart.config import Settings, load_settings
from stalwart.envelope import Envelope
from stalwart.ha import status
from waiting import until

HERE = Path(__file__).parent


def write_config(directory: Path, bus_url: str, store_url: str, lease: float) -> Path:
    """The replicas' config file: processes started as an operator would start them."""
    path = directory / "stalwart.toml"
    path.write_text(
        f'log_level = "WARNING"\n[bus]\nurl = "{bus_url}"\nlease = 2.0\n'
        f'retry_initial = 0.1\nretry_max = 0.5\n[store]\nurl = "{store_url}"\n'
        f"[ha]\nlease = {lease}\n"
    )
    return path


def make_settings(directory: Path, bus_url: str, store_url: str, lease: float) -> Settings:
    return load_settings(write_config(directory, bus_url, store_url, lease))


class Replicas:
    """Spawns ``stalwart run --ha ha_app:svc`` processes; kills them all at the end."""

    def __init__(self, config: Path, name: str, workdir: Path, **env: str) -> None:
        self.config = config
        self.name = name
        self.role = f"service.{name}"
        self.workdir = workdir
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(self.env)
        env["HA_APP_NAME"] = self.name
        env["HA_APP_DIR"] = str(self.workdir)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        log = (self.workdir / f"replica-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "stalwart", "run", "--ha", "ha_app:svc", "-c", str(self.config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    async def ready(self, timeout: float = 30.0) -> None:
        """Wait until every spawned replica has imported the service (and so contends)."""

        async def imported() -> bool:
            return all((self.workdir / f"imported-{p.pid}").exists() for p in self.procs)

        await until(imported, timeout, "every replica to start")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
            proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("replica-*.log"))


def holder_pid(holder: str | None) -> int | None:
    """The pid inside a ``host-pid-random`` holder id."""
    return None if not holder else int(holder.rsplit("-", 2)[1])


async def live_holder(engine: AsyncEngine, role: str) -> tuple[int, int, float] | None:
    """(pid, token, acquired_at) of the live holder of ``role``, if any."""
    for lease in (await status(engine)).leases:
        if lease.role == role and lease.live:
            pid = holder_pid(lease.holder)
            return None if pid is None else (pid, lease.token, lease.acquired_at)
    return None


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] in {"T", "t"}


def _writable(database: Path) -> bool:
    """True when a write transaction can start on the SQLite file now (50 ms of waiting)."""
    conn = sqlite3.connect(database, timeout=0.05, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def pause_outside_writes(pid: int, databases: list[Path]) -> None:
    """SIGSTOP ``pid`` at a moment it holds no write transaction on ``databases``.

    SQLite has no timeout for a lock held by a live process: one frozen inside
    a write transaction blocks every other writer of that file until it
    resumes (PostgreSQL ends such a session, see ``stalwart.ha._schema``). The
    failover tests are about the lease, so they pause the holder between writes.
    """
    for _ in range(200):
        os.kill(pid, signal.SIGSTOP)
        while not _stopped(pid):
            time.sleep(0.001)
        if all(_writable(db) for db in databases):
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError(f"process {pid} held a write transaction at every try")


async def effects(engine: AsyncEngine) -> list[tuple[str, int, int]]:
    """(message id, n, pid) of every effect written so far."""
    async with engine.connect() as conn:
        exists = await conn.run_sync(lambda sync: sync.dialect.has_table(sync, "ha_app_effects"))
        if not exists:
            return []
        rows = await conn.execute(text("SELECT id, n, pid FROM ha_app_effects"))
        return [(r[0], int(r[1]), int(r[2])) for r in rows]


async def publisher(bus_url: str, queue: str) -> Transport:
    """A started transport, once the active replica has declared ``queue``."""
    transport = open_transport(bus_url)
    await transport.start()

    async def declared() -> bool:
        return queue in await transport.queues()

    await until(declared, 20.0, f"queue {queue} to be declared")
    return transport


async def drain(bus: Transport, queue: str, count: int, timeout: float) -> list[Envelope]:
    """Take (and ack) ``count`` envelopes from ``queue`` within ``timeout`` seconds."""
    got: list[Envelope] = []
    deliveries = bus.consume(queue, 16)
    try:
        async with asyncio.timeout(timeout):
            async for delivery in deliveries:
                if delivery.envelope is not None:
                    got.append(delivery.envelope)
                await delivery.ack()
                if len(got) >= count:
                    break
    finally:
        await deliveries.aclose()  # type: ignore[attr-defined]
    return got
