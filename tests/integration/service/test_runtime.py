"""The service runtime on the embedded bus: each way a message can end, and the
consumer carrying on after every one of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from stalwart.bus import Transport
from stalwart.config import Settings
from stalwart.envelope import DeliveryState, Envelope, undecodable_id
from stalwart.errors import BrokerUnavailable, RequestTimeout
from stalwart.service import Context, Reject, Retry, Service, ServiceRunner, TokenAuthority
from waiting import until

S = DeliveryState


class Job(BaseModel):
    ous: str
    size: int


class Done(BaseModel):
    ous: str
    ok: bool


def make_service(name: str, seen: list[Any], **options: Any) -> Service:
    svc = Service(name, site="jao", heartbeat_interval=0.2, **options)

    @svc.handler("pipeline.process.*", body=Job)
    async def process(ctx: Context, job: Job) -> Done:
        seen.append(job)
        return Done(ous=job.ous, ok=True)

    @svc.handler("pipeline.fail", timeout=0.3)
    async def fail(ctx: Context, body: Any) -> None:
        seen.append(body)
        if body == "hang":
            await asyncio.sleep(60)
        if body == "ask":
            await ctx.request("nobody.listens", {}, timeout=0.05)
        if body == "retry":
            raise Retry("not yet", delay=0.05)
        if body == "reject":
            raise Reject("this is not for us")
        raise RuntimeError("boom")

    return svc


def caller_service(unique: str) -> Service:
    """A service that only makes requests (a runner needs one handler)."""
    svc = Service(f"caller-{unique}")

    @svc.handler("caller.never")
    async def never(ctx: Context, body: Any) -> None:
        return None

    return svc


@pytest.fixture
async def running(
    bus: Transport, settings: Settings, unique: str
) -> AsyncIterator[tuple[ServiceRunner, list[Any]]]:
    seen: list[Any] = []
    runner = ServiceRunner(make_service(f"svc-{unique}", seen), bus, settings)
    await runner.start()
    try:
        yield runner, seen
    finally:
        await runner.stop(grace=1.0)


async def publish(bus: Transport, topic: str, body: Any, **fields: Any) -> Envelope:
    envelope = Envelope.new(topic, body, **fields)
    await bus.publish([envelope])
    return envelope


async def test_valid_message_is_consumed_and_recorded(running, bus, lifecycle) -> None:
    # Given a running service, When a valid Job arrives
    runner, seen = running
    env = await publish(bus, "pipeline.process.jao", Job(ous="uid://A1", size=3))
    # Then the handler gets it typed and the life-cycle ends consumed
    await lifecycle.wait(env.id, runner.service.name, S.CONSUMED)
    assert seen == [Job(ous="uid://A1", size=3)]
    assert lifecycle.of(env.id, runner.service.name)[:2] == [S.RECEIVED, S.CONSUMED]
    assert runner.counters.processed == 1


@pytest.mark.parametrize(
    ("body", "kind", "expected_reason"),
    [
        ({"ous": "uid://A1"}, "Job", "invalid Job: size: Field required"),
        ({"ous": "uid://A1", "size": "big"}, "Job", "size: Input should be a valid integer"),
        ({"ous": "uid://A1", "size": 1}, "Telescope", "unknown kind 'Telescope'"),
    ],
)
async def test_bad_body_is_rejected_and_consumer_goes_on(
    running, bus, lifecycle, body, kind, expected_reason
) -> None:
    runner, seen = running
    name = runner.service.name
    # Given a message whose body fails its schema (or whose kind is unknown)
    bad = await publish(bus, "pipeline.process.jao", body, kind=kind)
    good = await publish(bus, "pipeline.process.jao", Job(ous="uid://A2", size=1))
    # Then it ends rejected with the reason, kept in the dead-letter queue
    await lifecycle.wait(bad.id, name, S.REJECTED)
    assert expected_reason in lifecycle.reason(bad.id, name, S.REJECTED)
    letters = await bus.dead_letters(name)
    assert [letter.envelope.id for letter in letters if letter.envelope] == [bad.id]
    # And the consumer carries on with the next message
    await lifecycle.wait(good.id, name, S.CONSUMED)
    assert seen == [Job(ous="uid://A2", size=1)]


async def test_raising_handler_is_retried_then_dead(running, bus, lifecycle) -> None:
    runner, seen = running
    env = await publish(bus, "pipeline.fail", "explode")
    await lifecycle.wait(env.id, runner.service.name, S.DEAD)
    # max_attempts is 3 in these settings
    assert seen == ["explode"] * 3
    assert "RuntimeError: boom" in lifecycle.reason(env.id, runner.service.name, S.DEAD)
    assert lifecycle.of(env.id, runner.service.name).count(S.FAILED) == 3


async def test_handler_that_never_returns_is_cancelled_and_fails(running, bus, lifecycle) -> None:
    runner, _ = running
    env = await publish(bus, "pipeline.fail", "hang")
    await lifecycle.wait(env.id, runner.service.name, S.FAILED)
    assert "timed out after 0.3s" in lifecycle.reason(env.id, runner.service.name, S.FAILED)


async def test_a_request_timing_out_inside_a_handler_is_told_from_the_handlers_own(
    running, bus, lifecycle
) -> None:
    runner, _ = running
    env = await publish(bus, "pipeline.fail", "ask")
    await lifecycle.wait(env.id, runner.service.name, S.FAILED)
    reason = lifecycle.reason(env.id, runner.service.name, S.FAILED)
    assert reason.startswith("RequestTimeout: no reply to 'nobody.listens' within 0.05s")


async def test_retry_and_reject_control_exceptions(running, bus, lifecycle) -> None:
    runner, seen = running
    name = runner.service.name
    retried = await publish(bus, "pipeline.fail", "retry")
    rejected = await publish(bus, "pipeline.fail", "reject")
    await lifecycle.wait(rejected.id, name, S.REJECTED)
    assert lifecycle.reason(rejected.id, name, S.REJECTED) == "this is not for us"
    assert seen.count("reject") == 1  # rejected at once, no retry
    await lifecycle.wait(retried.id, name, S.DEAD)
    assert seen.count("retry") == 3


async def test_expired_message_never_reaches_the_handler(running, bus, lifecycle) -> None:
    runner, seen = running
    env = Envelope.new("pipeline.process.jao", Job(ous="uid://old", size=1), ttl=0.001)
    await asyncio.sleep(0.01)
    await bus.publish([env])
    await lifecycle.wait(env.id, runner.service.name, S.EXPIRED)
    assert seen == []


async def test_request_reply(bus, settings, unique) -> None:
    # Given an executor service replying to requests
    seen: list[Any] = []
    executor = ServiceRunner(make_service(f"exec-{unique}", seen), bus, settings)
    caller = ServiceRunner(caller_service(unique), bus, settings)
    await executor.start()
    await caller.start()
    try:
        # When the caller makes a request
        reply = await caller.request(
            "pipeline.process.eu", Job(ous="uid://R1", size=2), timeout=5.0
        )
        # Then the reply carries the executor's answer and points at the request
        assert reply.kind == "Done"
        assert reply.body == {"ous": "uid://R1", "ok": True}
        # And a request nobody serves times out with advice
        with pytest.raises(RequestTimeout, match="stalwart status"):
            await caller.request("nobody.listens", {}, timeout=0.3)
    finally:
        await caller.stop(grace=1.0)
        await executor.stop(grace=1.0)


class RepliesFailAtFirst:
    """The bus, but its first ``failures`` publishes of a reply fail as they would while
    the broker is away."""

    def __init__(self, bus: Transport, failures: int) -> None:
        self._bus = bus
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    async def publish(self, batch: Any, **options: Any) -> None:
        if self.failures and any(e.topic.startswith("sys.reply.") for e in batch):
            self.failures -= 1
            raise BrokerUnavailable("the broker is away")
        await self._bus.publish(batch, **options)


async def test_a_reply_the_bus_refused_is_sent_again_and_the_handler_runs_once(
    bus, settings, unique
) -> None:
    # Given an idempotent executor whose first three replies meet a broker that is away
    calls: list[str] = []
    executor_svc = Service(f"exec-{unique}")

    @executor_svc.handler("calibration.check", idempotent=True)
    async def check(ctx: Context, body: Any) -> dict[str, float]:
        calls.append(ctx.envelope.id)
        return {"score": 0.9}

    flaky = RepliesFailAtFirst(bus, failures=3)
    executor = ServiceRunner(executor_svc, flaky, settings)  # type: ignore[arg-type]
    caller = ServiceRunner(caller_service(unique), bus, settings)
    await executor.start()
    await caller.start()
    try:
        # When the caller asks
        reply = await caller.request("calibration.check", {"ous": "uid://R2"}, timeout=10.0)
        # Then the reply arrives once the bus takes it, and the handler ran once
        assert reply.body == {"score": 0.9}
        assert flaky.failures == 0
        assert len(calls) == 1
    finally:
        await caller.stop(grace=1.0)
        await executor.stop(grace=1.0)


async def test_idempotent_handler_runs_once_per_message_id(bus, settings, unique, lifecycle):
    calls: list[str] = []
    svc = Service(f"idem-{unique}")

    @svc.handler("ingest.file", idempotent=True)
    async def ingest(ctx: Context, body: Any) -> None:
        calls.append(ctx.envelope.id)

    runner = ServiceRunner(svc, bus, settings)
    await runner.start()
    try:
        env = Envelope.new("ingest.file", {"path": "/data/x"})
        await bus.publish([env])
        await lifecycle.wait(env.id, svc.name, S.CONSUMED)
        await bus.publish([env])  # a redelivery of the same message id
        await lifecycle.wait(env.id, svc.name, S.CONSUMED, count=2)
        assert calls == [env.id]
        assert (
            "duplicate"
            in [r for s, r in lifecycle.states[(env.id, svc.name)] if s is S.CONSUMED][1]
        )
    finally:
        await runner.stop(grace=1.0)


async def test_roles_are_enforced_before_the_handler(bus, settings, unique, lifecycle) -> None:
    calls: list[str] = []
    svc = Service(f"secure-{unique}")

    @svc.handler("archive.delete", roles=("operator",))
    async def delete(ctx: Context, body: Any) -> None:
        calls.append(body["path"])

    runner = ServiceRunner(svc, bus, settings)
    await runner.start()
    authority = TokenAuthority(settings.security)
    forged = TokenAuthority(settings.security.model_copy(update={"secret": "x" * 32}))
    try:
        cases = {
            "missing": None,
            "forged": forged.issue("mallory", ["operator"], 60),
            "no-role": authority.issue("bob", ["viewer"], 60),
            "ok": authority.issue("alice", ["operator"], 60),
        }
        envs = {
            name: Envelope.new("archive.delete", {"path": name}, token=tok)
            for name, tok in cases.items()
        }
        await bus.publish(list(envs.values()))
        await lifecycle.wait(envs["ok"].id, svc.name, S.CONSUMED)
        for name, expected in [
            ("missing", "missing token"),
            ("forged", "invalid token"),
            ("no-role", "lacks role"),
        ]:
            await lifecycle.wait(envs[name].id, svc.name, S.REJECTED)
            assert expected in lifecycle.reason(envs[name].id, svc.name, S.REJECTED)
        assert calls == ["ok"]
        # the secret never appears in what the CLI would print
        assert envs["ok"].redacted()["token"] == "***"
    finally:
        await runner.stop(grace=1.0)


async def test_heartbeats_carry_counters(running, bus, unique) -> None:
    from stalwart.bus import QueueSpec
    from stalwart.messages import Heartbeat, heartbeat_topic

    runner, _ = running
    spec = QueueSpec(
        name=f"hb-{unique}", patterns=(heartbeat_topic(runner.service.name),), ephemeral=True
    )
    await bus.declare(spec)
    await publish(bus, "pipeline.process.jao", Job(ous="uid://H", size=1))
    beats: list[Heartbeat] = []

    async def take() -> None:
        async for d in bus.consume(spec.name, 8):
            assert d.envelope is not None
            beats.append(Heartbeat.model_validate(d.envelope.body))
            await d.ack()

    task = asyncio.create_task(take())
    try:
        await until(
            lambda: beats, 5.0, "a heartbeat", accept=lambda bs: any(b.processed >= 1 for b in bs)
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    beat = beats[-1]
    assert beat.service == runner.service.name and beat.site == "jao"
    assert beat.instance == runner.instance and beat.interval == 0.2


async def test_graceful_stop_finishes_inflight_work(bus, settings, unique, lifecycle) -> None:
    started = asyncio.Event()
    finished: list[str] = []
    svc = Service(f"graceful-{unique}")

    @svc.handler("work.slow")
    async def slow(ctx: Context, body: Any) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(ctx.envelope.id)

    runner = ServiceRunner(svc, bus, settings)
    await runner.start()
    env = await publish(bus, "work.slow", {})
    await asyncio.wait_for(started.wait(), 5)
    await runner.stop(grace=5.0)
    assert finished == [env.id]
    stats = await bus.queue_stats(svc.name)
    assert stats.ready == 0 and stats.inflight == 0


async def test_undecodable_message_is_rejected_kept_and_the_consumer_goes_on(
    running, bus, lifecycle
) -> None:
    import sqlite3
    import time as clock

    runner, seen = running
    name = runner.service.name
    # Given bytes that are not an envelope (one claiming an id, one not at all JSON)
    raw = b'{"id": "0190-bad", "topic": 42}'
    junk = b"\xff\xfe not json"
    with sqlite3.connect(bus.path) as conn:
        for data in (raw, junk):
            conn.execute(
                "INSERT INTO messages (queue, raw, visible_at) VALUES (?, ?, ?)",
                (name, data, clock.time()),
            )
    good = await publish(bus, "pipeline.process.jao", Job(ous="uid://after", size=1))
    # Then it is rejected with the decode error as reason, the raw bytes kept
    await lifecycle.wait("0190-bad", name, S.REJECTED)
    assert "undecodable" in lifecycle.reason("0190-bad", name, S.REJECTED)
    await lifecycle.wait(undecodable_id(junk), name, S.REJECTED)
    letters = await bus.dead_letters(name)
    assert sorted(letter.raw for letter in letters) == sorted([raw, junk])
    assert all(letter.envelope is None for letter in letters)
    # And the next message is handled as usual
    await lifecycle.wait(good.id, name, S.CONSUMED)
    assert seen == [Job(ous="uid://after", size=1)]


async def test_oversized_publish_from_a_handler_fails_the_attempt_clearly(
    bus, settings, unique, lifecycle
) -> None:
    svc = Service(f"big-{unique}", max_attempts=1)

    @svc.handler("make.big")
    async def make_big(ctx: Context, body: Any) -> None:
        await ctx.publish("big.out", {"blob": "x" * (settings.bus.max_message_size + 1)})

    runner = ServiceRunner(svc, bus, settings)
    await runner.start()
    try:
        env = await publish(bus, "make.big", {})
        await lifecycle.wait(env.id, svc.name, S.DEAD)
        assert "MessageTooLarge" in lifecycle.reason(env.id, svc.name, S.DEAD)
    finally:
        await runner.stop(grace=1.0)
