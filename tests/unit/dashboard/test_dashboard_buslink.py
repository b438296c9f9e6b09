"""Getting onto a bus that is down at start: retried in the background, said while down,
the live hub started once up, and stopped at once on close."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

from stalwart.backoff import Backoff
from stalwart.bus import Transport
from stalwart.dashboard.buslink import BusLink
from stalwart.dashboard.live import LiveHub
from stalwart.envelope import Envelope
from stalwart.errors import BrokerUnavailable


class DownThenUp:
    """A transport whose start fails ``failures`` times, then hangs if ``hang``, else works."""

    url = "amqp://ops:s3cret@bus.example:5672/"

    def __init__(self, failures: int, hang: bool = False) -> None:
        self.failures = failures
        self.hang = hang
        self.starts = 0
        self.cancelled = False
        self.connected = False

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


def link_to(transport: DownThenUp, hub: LiveHub, backoff: Backoff) -> BusLink:
    return BusLink(cast(Transport, transport), hub, start_transport=True, backoff=backoff)


async def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_bus_down_at_start_is_retried_until_up_then_the_live_hub_starts() -> None:
    # Given a bus that refuses the first 3 tries
    bus = DownThenUp(failures=3)
    hub = LiveHub(None, batch_interval=0.01)
    link = link_to(bus, hub, Backoff(0.02, 0.05))
    try:
        # When the link opens, Then it does not block, and says the bus is down, since when,
        # when it tries next, without the password
        await link.open()
        status = link.status()
        assert not status.reachable and status.attempts == 1
        assert status.since is not None and status.next_retry is not None
        assert status.next_retry > status.since
        assert status.error is not None and "connection refused" in status.error
        error = link.error
        assert error is not None and "unreachable since" in error and "next try in" in error
        assert "s3cret" not in error and "ops:***@bus.example" in error
        # When the bus comes up, Then the link is reachable with nothing to report
        await wait_for(lambda: link.reachable)
        status = link.status()
        assert bus.starts == 4 and link.error is None
        assert status.since is None and status.next_retry is None
        assert status.attempts == 0 and status.error is None
        # And the live hub runs: a message offered reaches a viewer without a manual flush
        async with hub.subscribe() as viewer:
            hub.offer(Envelope.new("work.back", {"n": 1}))
            batch = await asyncio.wait_for(viewer.queue.get(), 2)
        assert [m["topic"] for m in batch] == ["work.back"]
    finally:
        await link.close()
        await hub.close()


async def test_the_since_time_stays_while_tries_keep_failing() -> None:
    # Given a bus that stays down
    link = link_to(DownThenUp(failures=1000), LiveHub(None), Backoff(0.01, 0.01))
    await link.open()
    since = link.since
    try:
        # When it has been tried a few more times
        await wait_for(lambda: link.attempts >= 4)
        # Then it is still down since the first failure
        assert link.since == since and not link.reachable
    finally:
        await link.close()


async def test_closing_stops_the_retries_at_once_while_waiting() -> None:
    # Given a bus that stays down and a long wait before the next try
    bus = DownThenUp(failures=1000)
    link = link_to(bus, LiveHub(None), Backoff(60.0, 60.0))
    await link.open()
    # When the dashboard closes, Then the retry loop ends within a second and tries no more
    started = time.monotonic()
    await link.close()
    assert time.monotonic() - started < 1.0
    await asyncio.sleep(0.05)
    assert bus.starts == 1


async def test_closing_stops_a_try_that_hangs() -> None:
    # Given a bus refused once, then a try that hangs (a host that never answers)
    bus = DownThenUp(failures=1, hang=True)
    link = link_to(bus, LiveHub(None), Backoff(0.01, 0.01))
    await link.open()
    await wait_for(lambda: bus.starts == 2)
    # When the dashboard closes, Then the hanging try is cancelled within a second
    started = time.monotonic()
    await link.close()
    assert time.monotonic() - started < 1.0 and bus.cancelled


async def test_a_transport_owned_by_the_caller_is_not_started_and_counts_as_up() -> None:
    # Given a transport the caller started
    bus = DownThenUp(failures=1000)
    bus.connected = True
    hub = LiveHub(None)
    link = BusLink(cast(Transport, bus), hub, start_transport=False)
    # When the link opens, Then it leaves the transport alone and reports it reachable
    await link.open()
    try:
        assert bus.starts == 0 and link.reachable and link.error is None
        # And when its connection drops, it reports it unreachable, reconnecting
        bus.connected = False
        assert not link.reachable and "connection was lost" in (link.error or "")
    finally:
        await link.close()
        await hub.close()
