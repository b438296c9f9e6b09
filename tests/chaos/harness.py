"""A whole stalwart system in real processes, and the fault suite's counts.

:class:`System` writes one ``stalwart.toml`` and starts, as separate
processes: the persistence subscriber (``stalwart store persist``), consumers of the
effects service (``stalwart run effects_app:svc``, or HA replicas with
``stalwart run --ha``) and producers (``producer.py``). Each process has
its own home (its own outbox). ``close()`` kills whatever is still running.

:func:`count` reads the store and the effects table into :class:`Counts`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from effects_app import EFFECTS_DDL
from sqlalchemy import func, select, text

from stalwart.bus import open_transport
from stalwart.config import Settings, load_settings
from stalwart.ha import status
from stalwart.store.engine import make_engine
from stalwart.store.schema import deliveries
from waiting import until

HERE = Path(__file__).parent
STALWART = str(Path(sys.executable).with_name("stalwart"))
FULL = os.environ.get("STALWART_CHAOS_FULL") == "1"

__all__ = [
    "FULL",
    "Counts",
    "System",
    "assert_effectively_once",
    "count",
    "rejections",
    "scale",
    "settle",
]


def scale(short: int, full: int) -> int:
    """``full`` under ``STALWART_CHAOS_FULL=1`` (``make chaos``), else ``short``."""
    return full if FULL else short


@dataclass(frozen=True)
class Counts:
    """What the store and the effects table say about one run's published ids."""

    published: int
    effect_rows: int
    distinct_effects: int
    consumed: int
    non_final: int  # delivery rows at sent, received or failed
    other_final: int  # rejected, dead or expired
    missing: int  # published ids without a delivery row at the service
    others: tuple[tuple[str, str, int], ...] = ()  # (state, reason, n) not consumed, top 3

    @property
    def duplicates(self) -> int:
        return self.effect_rows - self.distinct_effects

    def line(self, scenario: str, seconds: float) -> str:
        return (
            f"[{scenario}] published={self.published} effects={self.effect_rows} "
            f"distinct={self.distinct_effects} duplicates={self.duplicates} "
            f"consumed={self.consumed} non_final={self.non_final} "
            f"other_final={self.other_final} missing={self.missing} runtime={seconds:.1f}s"
            + (f" not consumed: {list(self.others)}" if self.others else "")
        )

    @property
    def ended(self) -> int:
        """Ids that reached a final state at the service (consumed or not)."""
        return self.consumed + self.other_final

    def effectively_once(self) -> bool:
        """Every id has one effect and ends consumed; nothing else happened."""
        got = (
            self.distinct_effects,
            self.duplicates,
            self.consumed,
            self.non_final,
            self.other_final,
            self.missing,
        )
        return got == (self.published, 0, self.published, 0, 0, 0)

    def complete(self) -> bool:
        """Every id ended, and every consumed one has its effect."""
        return self.ended >= self.published and self.distinct_effects >= self.consumed


async def count(store_url: str, service: str, prefix: str, published: int) -> Counts:
    """Counts for the ids ``prefix-*`` at ``service``."""
    engine = make_engine(store_url)
    like = f"{prefix}-%"
    try:
        async with engine.connect() as conn:
            rows, distinct = (
                await conn.execute(
                    text(
                        "SELECT count(*), count(DISTINCT message_id) FROM effects "
                        "WHERE service = :service AND message_id LIKE :like"
                    ),
                    {"service": service, "like": like},
                )
            ).one()
            by_state = dict(
                (
                    await conn.execute(
                        select(deliveries.c.state, func.count())
                        .where(deliveries.c.service == service)
                        .where(deliveries.c.message_id.like(like))
                        .group_by(deliveries.c.state)
                    )
                ).all()
            )
            others = (
                await conn.execute(
                    select(deliveries.c.state, deliveries.c.reason, func.count())
                    .where(deliveries.c.service == service)
                    .where(deliveries.c.message_id.like(like))
                    .where(deliveries.c.state != "consumed")
                    .group_by(deliveries.c.state, deliveries.c.reason)
                    .order_by(func.count().desc())
                    .limit(3)
                )
            ).all()
    finally:
        await engine.dispose()
    consumed = int(by_state.get("consumed", 0))
    non_final = sum(int(by_state.get(s, 0)) for s in ("sent", "received", "failed"))
    other = sum(int(by_state.get(s, 0)) for s in ("rejected", "dead", "expired"))
    return Counts(
        published=published,
        effect_rows=int(rows),
        distinct_effects=int(distinct),
        consumed=consumed,
        non_final=non_final,
        other_final=other,
        missing=published - consumed - non_final - other,
        others=tuple((str(st), str(reason)[:120], int(n)) for st, reason, n in others),
    )


async def rejections(store_url: str, service: str) -> list[tuple[str, str | None]]:
    """(message id, reason) of every delivery at ``service`` that ended rejected."""
    engine = make_engine(store_url)
    query = select(deliveries.c.message_id, deliveries.c.reason).where(
        deliveries.c.service == service, deliveries.c.state == "rejected"
    )
    try:
        async with engine.connect() as conn:
            return [(str(r[0]), r[1]) for r in await conn.execute(query)]
    finally:
        await engine.dispose()


async def settle(
    store_url: str, service: str, prefix: str, published: int, timeout: float, quiet: float
) -> Counts:
    """Counts once every id ended (or ``timeout`` passed), taken again after ``quiet``
    seconds so that late redeliveries show as duplicates."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (await count(store_url, service, prefix, published)).complete():
                break
        except Exception as exc:  # the store may be restarting
            print(f"counting failed ({exc!r}); trying again")
        await asyncio.sleep(0.5)
    await asyncio.sleep(quiet)
    return await count(store_url, service, prefix, published)


def assert_effectively_once(counts: Counts, scenario: str, seconds: float) -> None:
    """Print the counts; every id has one effect and ends consumed, nothing else."""
    line = counts.line(scenario, seconds)
    print(line)
    assert counts.effectively_once(), line


class System:
    """Persister, consumers and producers of one test, as child processes."""

    def __init__(
        self, workdir: Path, bus_url: str, store_url: str, service: str, **bus: object
    ) -> None:
        self.workdir = workdir
        self.service = service
        self.store_url = store_url
        self.config = workdir / "stalwart.toml"
        options = {"url": bus_url, "lease": 2.0, "retry_initial": 0.5, "retry_max": 5.0, **bus}
        bus_lines = "".join(f"{k} = {_toml(v)}\n" for k, v in options.items())
        self.config.write_text(
            f'log_level = "WARNING"\n[bus]\n{bus_lines}[store]\nurl = "{store_url}"\n'
            # 5 s: a 2 s lease flapped between the replicas whenever the shared PostgreSQL
            # answered slowly (the whole suite on a loaded machine), and little got done.
            "[ha]\nlease = 5.0\n"
        )
        self.settings: Settings = load_settings(self.config, env={})
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}  # extra environment of the processes started next

    def _env(self, name: str) -> dict[str, str]:
        home = self.workdir / name
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STALWART_")}
        env.update(
            STALWART_CONFIG=str(self.config),
            STALWART_HOME=str(home),
            CHAOS_SERVICE=self.service,
            PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
        )
        env.update(self.env)
        return env

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        """Start ``argv`` as process ``name`` (output in ``<workdir>/<name>.log``)."""
        log = (self.workdir / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            argv, env=env or self._env(name), cwd=HERE, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self.procs[name].pid

    async def prepare(self) -> None:
        """Create the effects table, then start the persister and wait for its queue."""
        engine = make_engine(self.store_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(EFFECTS_DDL))
        finally:
            await engine.dispose()
        self.spawn(
            "persister", [STALWART, "store", "persist", "--lease", "3", "--batch-size", "500"]
        )
        await self.wait_queue("stalwart-persist")

    async def wait_queue(self, queue: str, timeout: float = 60.0) -> None:
        bus = open_transport(self.settings.bus.url, exchange=self.settings.bus.exchange)
        await bus.start()
        try:

            async def declared() -> bool:
                return queue in await bus.queues()

            await until(declared, timeout, f"queue {queue} to be declared", interval=0.2)
        finally:
            await bus.close()

    async def wait_applied(self, prefix: str, published: int, share: float, timeout: float) -> None:
        """Until ``share`` of the ids ``prefix-*`` have an effect or a final state.

        On timeout the error says what the store and the service's queue hold.
        """
        last: Counts | str = "no count yet"

        async def reached() -> bool:
            nonlocal last
            try:
                last = await count(self.store_url, self.service, prefix, published)
            except Exception as exc:
                last = repr(exc)
                return False
            return max(last.distinct_effects, last.ended) >= published * share

        try:
            await until(reached, timeout, f"{share:.0%} of the effects", interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {last}; {await self.queue_stats()}") from None

    async def queue_stats(self) -> str:
        bus = open_transport(self.settings.bus.url, exchange=self.settings.bus.exchange)
        try:
            await bus.start()
            return str(await bus.queue_stats(self.service))
        except Exception as exc:
            return f"queue stats unavailable: {exc!r}"
        finally:
            await bus.close()

    async def consumers(self, count: int) -> None:
        for _ in range(count):
            self.consumer()
        await self.wait_queue(self.service)

    def consumer(self) -> int:
        name = f"consumer-{len(self.procs)}"
        return self.spawn(name, [STALWART, "run", "effects_app:svc"])

    def replica(self) -> int:
        """An HA replica of the effects service (one is active, the others stand by)."""
        return self.spawn(
            f"replica-{len(self.procs)}", [STALWART, "run", "--ha", "effects_app:svc"]
        )

    async def leader(self) -> int | None:
        """The pid of the replica holding the service's role now, if any."""
        engine = make_engine(self.store_url)
        try:
            for lease in (await status(engine)).leases:
                if lease.role == f"service.{self.service}" and lease.live and lease.holder:
                    return int(lease.holder.rsplit("-", 2)[1])
        except Exception:
            return None
        finally:
            await engine.dispose()
        return None

    async def new_leader(self, killed: set[int], timeout: float) -> int | None:
        """The pid of the replica holding the role, once it is none of ``killed``
        (a killed holder's lease stays live until it runs out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = await self.leader()
            if pid is not None and pid not in killed:
                return pid
            await asyncio.sleep(0.2)
        return None

    def producer(self, prefix: str, count: int) -> str:
        name = f"producer-{prefix}"
        self.spawn(name, [sys.executable, str(HERE / "producer.py"), prefix, str(count)])
        return name

    async def finished(self, name: str, timeout: float) -> None:
        proc = self.procs[name]
        try:
            code = await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)
        except TimeoutError:
            raise AssertionError(f"{name} still running after {timeout:.0f}s") from None
        assert code == 0, f"{name} exited {code}:\n{self.log(name)[-3000:]}"

    def kill(self, pid: int) -> None:
        """SIGKILL one process of this system."""
        os.kill(pid, signal.SIGKILL)
        for proc in self.procs.values():
            if proc.pid == pid:
                proc.wait(30)

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        """SIGTERM every process still running, then SIGKILL the ones that linger.

        Prints the last lines of each process's log (shown when a test fails).
        """
        for name in self.procs:
            tail = self.log(name).strip().splitlines()[-3:]
            print(f"--- {name} (exit {self.procs[name].poll()}):", *tail, sep="\n  ")
        running = [p for p in self.procs.values() if p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _toml(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)
