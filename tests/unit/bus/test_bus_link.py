"""A long-lived component on a bus that comes and goes: the start retried in the background
and said while down, the first-up callback, subscriptions renewed, envelopes kept while the
bus is away and published once it is back, and everything stopped at once on close."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import pytest

from stalwart.backoff import Backoff
from stalwart.bus import BusLink, QueueSpec, Transport
from stalwart.envelope import Envelope
from stalwart.errors import BrokerUnavailable
from waiting import until


@dataclass
class FakeDelivery:
    envelope: Envelope | None
    acked: bool = False

    async def ack(self) -> None:
        self.acked = True


@dataclass
class FakeBus:
    """Start fails ``failures`` times, then hangs if ``hang``, else works; publishes fail
    while ``down``; each consume ends after the deliveries put in ``feed`` up to a None."""

    failures: int = 0
    hang: bool = False
    url: str = "amqp://ops:s3cret@bus.example:5672/"
    starts: int = 0
    cancelled: bool = False
    connected: bool = False
    down: bool = False
    declared: list[QueueSpec] = field(default_factory=list)
    published: list[Envelope] = field(default_factory=list)
    feed: asyncio.Queue[FakeDelivery | None] = field(default_factory=asyncio.Queue)

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise BrokerUnavailable("cannot reach RabbitMQ (connection refused)")
        if self.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        self.connected = True

    async def declare(self, spec: QueueSpec) -> None:
        self.declared.append(spec)

    async def consume(self, queue: str, prefetch: int = 16) -> AsyncIterator[FakeDelivery]:
        while (delivery := await self.feed.get()) is not None:
            yield delivery

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if self.down:
            raise BrokerUnavailable("cannot reach RabbitMQ (connection refused)")
        self.published.extend(envelopes)


def link_to(bus: FakeBus, backoff: Backoff | None = None, **options: int) -> BusLink:
    return BusLink(cast(Transport, bus), backoff=backoff or Backoff(0.01, 0.02), **options)


async def test_a_bus_down_at_start_is_retried_until_up_then_the_first_up_callback_runs() -> None:
    # Given a bus that refuses the first 3 tries, and a callback for the first time up
    bus = FakeBus(failures=3)
    link = link_to(bus, Backoff(0.02, 0.05))
    ups: list[int] = []

    async def up() -> None:
        ups.append(bus.starts)

    link.on_up(up)
    try:
        # When the link opens, Then it returns after the first try and says the bus is down,
        # since when, when it tries next and why, without the password
        await link.open()
        assert not link.reachable and not link.up and link.attempts == 1
        assert link.since is not None and link.next_retry is not None
        assert link.next_retry > link.since
        assert link.last_failure is not None and "connection refused" in link.last_failure
        assert link.url == "amqp://ops:***@bus.example:5672/"
        # When the bus comes up, Then the link is reachable with nothing to report
        await until(lambda: link.reachable, 5.0, "the bus reachable", interval=0.01)
        assert bus.starts == 4 and link.attempts == 0
        assert link.since is None and link.next_retry is None and link.last_failure is None
        # And the callback ran once, after the successful start
        await until(lambda: bool(ups), 5.0, "the first-up callback", interval=0.01)
        assert ups == [4]
    finally:
        await link.close()


async def test_the_since_time_stays_while_tries_keep_failing() -> None:
    # Given a bus that stays down
    link = link_to(FakeBus(failures=1000), Backoff(0.01, 0.01))
    await link.open()
    since = link.since
    try:
        # When it has been tried a few more times
        await until(lambda: link.attempts >= 4, 5.0, "4 tries", interval=0.01)
        # Then it is still down since the first failure
        assert link.since == since and not link.reachable
    finally:
        await link.close()


async def test_opening_without_waiting_returns_before_the_first_try() -> None:
    # Given a bus whose start hangs
    bus = FakeBus(hang=True)
    link = link_to(bus)
    # When the link opens without waiting, Then it returns at once, the try going on behind
    await asyncio.wait_for(link.open(wait=False), timeout=1.0)
    await until(lambda: bus.starts == 1, 5.0, "the first try", interval=0.01)
    await link.close()
    assert bus.cancelled


async def test_closing_stops_the_retries_at_once_while_waiting() -> None:
    # Given a bus that stays down and a long wait before the next try
    bus = FakeBus(failures=1000)
    link = link_to(bus, Backoff(60.0, 60.0))
    await link.open()
    # When the component closes, Then the retry loop ends within a second and tries no more
    started = time.monotonic()
    await link.close()
    assert time.monotonic() - started < 1.0
    await asyncio.sleep(0.05)
    assert bus.starts == 1


async def test_closing_stops_a_try_that_hangs() -> None:
    # Given a bus refused once, then a try that hangs (a host that never answers)
    bus = FakeBus(failures=1, hang=True)
    link = link_to(bus)
    await link.open()
    await until(lambda: bus.starts == 2, 5.0, "the second try", interval=0.01)
    # When the component closes, Then the hanging try is cancelled within a second
    started = time.monotonic()
    await link.close()
    assert time.monotonic() - started < 1.0 and bus.cancelled


async def test_a_transport_the_caller_started_is_left_alone_and_counts_as_up() -> None:
    # Given a transport the caller started
    bus = FakeBus(failures=1000, connected=True)
    link = BusLink(cast(Transport, bus), start=False)
    # When the link opens, Then it leaves the transport alone and reports it reachable
    await link.open()
    try:
        assert bus.starts == 0 and link.up and link.reachable
        # And when its connection drops, it is up (reconnecting) but not reachable
        bus.connected = False
        assert link.up and not link.reachable
    finally:
        await link.close()


async def test_a_subscription_is_declared_once_up_and_renewed_when_its_consumer_ends() -> None:
    # Given a link subscribed to heartbeats, on a bus down at first
    bus = FakeBus(failures=2)
    link = link_to(bus)
    spec = QueueSpec("watch-me", ("sys.heartbeat.#",), max_attempts=1, ephemeral=True)
    seen: list[str] = []
    link.subscribe(spec, lambda env: seen.append(env.topic))
    await link.open()
    try:
        # When the bus comes up and a heartbeat arrives
        await until(lambda: bus.declared == [spec], 5.0, "the queue declared", interval=0.01)
        first = FakeDelivery(Envelope.new("sys.heartbeat.a", {}))
        bus.feed.put_nowait(first)
        # Then the handler has it and it is acked
        await until(lambda: seen == ["sys.heartbeat.a"], 5.0, "the first heartbeat", interval=0.01)
        assert first.acked
        # When the consumer ends (the bus dropped it), Then the queue is declared again
        # and the next heartbeat is handled
        bus.feed.put_nowait(None)
        await until(lambda: len(bus.declared) == 2, 5.0, "the queue declared again", interval=0.01)
        bus.feed.put_nowait(FakeDelivery(Envelope.new("sys.heartbeat.b", {})))
        await until(
            lambda: seen == ["sys.heartbeat.a", "sys.heartbeat.b"],
            5.0,
            "the second heartbeat",
            interval=0.01,
        )
    finally:
        await link.close()


async def test_a_handler_that_raises_does_not_end_the_subscription() -> None:
    # Given a subscription whose handler fails on a poison message
    bus = FakeBus()
    link = link_to(bus)
    seen: list[int] = []

    def handle(env: Envelope) -> None:
        if env.body.get("poison"):
            raise ValueError("poison")
        seen.append(env.body["n"])

    link.subscribe(QueueSpec("q", ("work.#",)), handle)
    await link.open()
    try:
        # When the poison message comes before a good one
        bus.feed.put_nowait(FakeDelivery(Envelope.new("work.a", {"poison": True})))
        bus.feed.put_nowait(FakeDelivery(Envelope.new("work.a", {"n": 1})))
        # Then the good one is handled all the same, on the same consumer
        await until(lambda: seen == [1], 5.0, "the good message", interval=0.01)
        assert len(bus.declared) == 1
    finally:
        await link.close()


def test_subscribing_after_open_is_refused() -> None:
    async def scenario() -> None:
        link = link_to(FakeBus(hang=True))
        await link.open(wait=False)
        try:
            with pytest.raises(RuntimeError, match="before open"):
                link.subscribe(QueueSpec("late", ("#",)), print)
        finally:
            await link.close()

    asyncio.run(scenario())


def test_a_pending_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_pending must be at least 1"):
        BusLink(cast(Transport, FakeBus()), max_pending=0)


async def test_envelopes_wait_while_the_bus_is_away_and_the_oldest_go_past_the_limit() -> None:
    # Given a link that keeps at most 3 envelopes, on a bus that stays down
    bus = FakeBus(failures=1000)
    link = link_to(bus, max_pending=3)
    await link.open()
    try:
        # When 5 envelopes are emitted, Then none is published and only the newest 3 wait
        for n in range(5):
            link.emit(Envelope.new("sys.watchdog.started", {"n": n}))
        assert link.pending == 3 and not bus.published
    finally:
        await link.close()
    # And when the bus is back, the 3 kept are published, oldest first
    bus.failures = 0
    link = link_to(bus, max_pending=3)
    for n in range(2, 5):
        link.emit(Envelope.new("sys.watchdog.started", {"n": n}))
    await link.open()
    try:
        await until(lambda: link.pending == 0, 5.0, "nothing pending", interval=0.01)
        assert [e.body["n"] for e in bus.published] == [2, 3, 4]
    finally:
        await link.close()


async def test_a_failed_publish_is_retried_with_nothing_lost() -> None:
    # Given a bus that is up, but refuses publishes for now
    bus = FakeBus(down=True)
    link = link_to(bus)
    await link.open()
    try:
        link.emit(Envelope.new("sys.watchdog.restarted", {"n": 1}))
        await asyncio.sleep(0.1)
        assert link.pending == 1 and not bus.published
        # When it takes publishes again, Then the envelope goes out, once
        bus.down = False
        await until(lambda: link.pending == 0, 5.0, "nothing pending", interval=0.01)
        assert [e.body["n"] for e in bus.published] == [1]
    finally:
        await link.close()


async def test_closing_publishes_what_is_pending_first() -> None:
    # Given a reachable bus that refuses publishes for a moment
    bus = FakeBus(down=True)
    link = link_to(bus)
    await link.open()
    link.emit(Envelope.new("sys.watchdog.stopped", {}))

    async def back() -> None:
        await asyncio.sleep(0.1)
        bus.down = False

    task = asyncio.create_task(back())
    # When the component closes with time to flush, Then the envelope is published first,
    # and the close returns as soon as it is
    started = time.monotonic()
    await link.close(flush_timeout=3.0)
    await task
    assert link.pending == 0 and len(bus.published) == 1
    assert time.monotonic() - started < 1.0


async def test_queue_stats_are_none_while_the_bus_is_away_or_does_not_answer() -> None:
    # Given a bus that stays down
    bus = FakeBus(failures=1000)
    link = link_to(bus)
    await link.open()
    try:
        # When a backlog is asked, Then there is none rather than an error or a wait
        assert await link.queue_stats("work") is None
    finally:
        await link.close()
    # And on a bus that is up but cannot tell (no queue_stats), the same
    link = link_to(FakeBus())
    await link.open()
    try:
        assert link.up and await link.queue_stats("work") is None
    finally:
        await link.close()
