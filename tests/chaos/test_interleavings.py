"""Property: however copies of one message id reach several instances of an idempotent
service (in any order, at any moment, with runs that fail and are retried), its store
effect happens once and every copy is acknowledged.

Real ServiceRunner instances share a SQLite store; a scripted in-memory queue hands each
copy to the instance and at the moment a Hypothesis-drawn schedule says, and hands back
what is retried or released, until every copy is settled.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from harness import scale
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalwart.bus import QueueSpec
from stalwart.config import Settings
from stalwart.envelope import Envelope, encode
from stalwart.errors import DecodeError
from stalwart.service import Context, Service, ServiceRunner
from stalwart.store.engine import make_engine

_effects = sa.Table(
    "interleaving_effects",
    sa.MetaData(),
    sa.Column("service", sa.String(200), nullable=False),
    sa.Column("message_id", sa.String(64), nullable=False),
)
MAX_ATTEMPTS = 6


@dataclass
class _Queue:
    """One service queue: copies waiting, each instance's inbox, and how copies ended."""

    inboxes: list[asyncio.Queue[_Delivery]]
    waiting: list[tuple[Envelope, int]] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)  # "ack" or "dead", one per copy

    def hand(self, instance: int) -> None:
        """The next waiting copy to ``instance`` (nothing if none waits)."""
        if self.waiting:
            envelope, attempt = self.waiting.pop(0)
            self.inboxes[instance].put_nowait(_Delivery(self, envelope, attempt))


class _Delivery:
    def __init__(self, queue: _Queue, envelope: Envelope, attempt: int) -> None:
        self.queue = "interleavings"
        self.attempt = attempt
        self.raw = encode(envelope)
        self._envelope = envelope
        self._owner = queue

    @property
    def envelope(self) -> Envelope | None:
        return self._envelope

    @property
    def error(self) -> DecodeError | None:
        return None

    async def ack(self) -> None:
        self._owner.ended.append("ack")

    async def retry(self, delay: float | None, reason: str) -> bool:
        if self.attempt >= MAX_ATTEMPTS:
            self._owner.ended.append("dead")
            return False
        self._owner.waiting.append((self._envelope, self.attempt + 1))
        return True

    async def dead(self, reason: str) -> None:
        self._owner.ended.append("dead")

    async def release(self) -> None:
        self._owner.waiting.append((self._envelope, self.attempt))

    async def extend(self, seconds: float) -> None:
        return None


class _Transport:
    """What one instance sees of the bus: its inbox; publishing (life cycle) goes nowhere."""

    url = "memory://interleavings"
    connected = True

    def __init__(self, inbox: asyncio.Queue[_Delivery]) -> None:
        self._inbox = inbox

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def declare(self, queue: QueueSpec) -> None:
        return None

    async def publish(self, batch: Sequence[Envelope], *, sync: bool = True) -> None:
        return None

    async def consume(self, queue: str, prefetch: int) -> AsyncIterator[_Delivery]:
        while True:
            yield await self._inbox.get()


@dataclass(frozen=True)
class Case:
    copies: int
    instances: int
    steps: list[tuple[int, float]]  # (instance, pause in seconds after handing it a copy)
    durations: list[float]  # how long each successive run takes before its effect
    failing: frozenset[int]  # runs that fail inside their transaction (rolled back)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    instances = draw(st.integers(2, 4))
    copies = draw(st.integers(2, 5))
    pause = st.sampled_from([0.0, 0.0, 0.001, 0.005, 0.02])
    steps = draw(st.lists(st.tuples(st.integers(0, instances - 1), pause), min_size=copies))
    durations = draw(st.lists(st.sampled_from([0.0, 0.002, 0.01, 0.03]), min_size=1))
    failing = draw(st.frozensets(st.integers(0, copies), max_size=2))
    return Case(copies, instances, steps, durations, failing)


def _service(name: str, case: Case, runs: list[int]) -> Service:
    svc = Service(name, concurrency=4, heartbeat_interval=60.0, grace=1.0)

    @svc.handler("interleave.item", idempotent=True)
    async def work(ctx: Context, body: Any) -> None:
        run = len(runs)
        runs.append(run)
        await asyncio.sleep(case.durations[run % len(case.durations)])
        async with ctx.transaction() as tx:
            await tx.execute(_effects.insert().values(service=name, message_id=ctx.envelope.id))
            if run in case.failing:
                raise RuntimeError(f"run {run} fails after writing its effect")

    return svc


async def _effect_count(store_url: str, name: str) -> int:
    engine = make_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_effects.metadata.create_all)
            query = sa.select(sa.func.count()).where(_effects.c.service == name)
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def _play(case: Case, base: Settings, name: str) -> tuple[int, list[str], int]:
    """(effects, how each copy ended, handler runs) once every copy is settled."""
    store_url = base.store.url
    await _effect_count(store_url, name)  # creates the table
    queue = _Queue([asyncio.Queue() for _ in range(case.instances)])
    envelope = Envelope.new("interleave.item", {"case": name})
    queue.waiting = [(envelope, 1) for _ in range(case.copies)]
    runs: list[int] = []
    svc = _service(name, case, runs)
    runners = [ServiceRunner(svc, _Transport(inbox), base) for inbox in queue.inboxes]
    for runner in runners:
        await runner.start()
    try:
        for instance, pause in case.steps:
            queue.hand(instance)
            await asyncio.sleep(pause)
        deadline = time.monotonic() + 30.0
        turn = 0
        while len(queue.ended) < case.copies and time.monotonic() < deadline:
            queue.hand(case.steps[turn % len(case.steps)][0])  # what came back, in turn
            turn += 1
            await asyncio.sleep(0.005)
    finally:
        for runner in runners:
            await runner.stop(grace=2.0)
    return await _effect_count(store_url, name), queue.ended, len(runs)


@pytest.fixture(scope="module")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home: Path = tmp_path_factory.mktemp("interleavings")
    return Settings.model_validate(
        {
            "home": str(home),
            "store": {"url": f"sqlite:///{home}/store.db"},
            "bus": {
                "url": f"sqlite:///{home}/unused-bus.db",
                "lease": 2.0,
                "max_attempts": MAX_ATTEMPTS,
            },
            "log_level": "WARNING",
        }
    )


@pytest.mark.timeout(scale(120, 900))
@settings(
    max_examples=scale(20, 300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_one_effect_for_any_interleaving_of_copies(base_settings: Settings, case: Case) -> None:
    # Given several instances of an idempotent service sharing the store
    name = f"interleave-{uuid.uuid4().hex[:12]}"  # a service of this example alone
    # When copies of one id reach them as the schedule says (some runs failing)
    effects, ended, runs = asyncio.run(_play(case, base_settings, name))
    # Then the effect happened once, and every copy was acknowledged
    assert effects == 1, f"{effects} effects after {runs} runs for {case}"
    assert ended == ["ack"] * case.copies, f"copies ended {ended} for {case}"
