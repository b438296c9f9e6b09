"""EventPublisher: sys.* events go out on their topics, and a missing bus never raises."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from stalwart.bus import Transport
from stalwart.envelope import Envelope
from stalwart.errors import BrokerUnavailable
from stalwart.events import HaKind, IntegrityEvent, IntegrityKind, LeaseEvent
from stalwart.service import EventPublisher

LEASE = LeaseEvent(event=HaKind.FENCED, role="service.qa", holder="qa@eu/1", token=4)


class _Recording:
    """A started transport that keeps what it is given."""

    url = "amqp://broker/"

    def __init__(self) -> None:
        self.published: list[Envelope] = []

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        self.published.extend(envelopes)


class _Refusing(_Recording):
    """A started transport whose broker refuses every publish."""

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        raise BrokerUnavailable("broker went away")


async def test_an_event_goes_out_on_its_topic_as_its_sender() -> None:
    bus = _Recording()
    events = EventPublisher(bus, "qa@eu/1")  # type: ignore[arg-type]
    assert await events.publish(LEASE) is True
    (envelope,) = bus.published
    assert (envelope.topic, envelope.kind, envelope.sender) == (
        "sys.ha.fenced",
        "LeaseEvent",
        "qa@eu/1",
    )
    assert LeaseEvent.model_validate(envelope.body) == LEASE
    assert events.published == 1


async def test_events_are_signed_with_the_process_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a process whose token is in STALWART_TOKEN, as services and the watchdog get it
    monkeypatch.setenv("STALWART_TOKEN", "tok-of-this-process")
    bus = _Recording()
    # When an event is published, Then it carries that token (and one given wins)
    await EventPublisher(bus, "qa@eu/1").publish(LEASE)  # type: ignore[arg-type]
    await EventPublisher(bus, "qa@eu/1", token="given").publish(LEASE)  # type: ignore[arg-type]
    assert [e.token for e in bus.published] == ["tok-of-this-process", "given"]


async def test_without_a_bus_events_are_dropped_not_raised() -> None:
    events = EventPublisher(None, "qa@eu/1")
    assert events.unavailable == "no bus configured"
    assert await events.publish(LEASE) is False
    assert events.published == 0


async def test_a_refused_publish_is_logged_and_reported_false(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = EventPublisher(_Refusing(), "qa@eu/1")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, "stalwart.events"):
        assert await events.publish(LEASE) is False
    assert "event sys.ha.fenced not published: broker went away" in caplog.text


async def test_an_unreachable_bus_is_said_once_and_commands_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def connect() -> Transport:
        raise BrokerUnavailable("connection refused")

    event = IntegrityEvent(event=IntegrityKind.VERIFIED, site="eu", name="a")
    with caplog.at_level(logging.WARNING, "stalwart.events"):
        async with EventPublisher(None, "integrity@eu", connect=connect) as events:
            assert events.unavailable == "bus unreachable (connection refused)"
            assert [await events.publish(event) for _ in range(3)] == [False] * 3
    assert caplog.text.count("events will not be published") == 1


async def test_a_bus_that_does_not_answer_times_out() -> None:
    class _Hanging:
        async def start(self) -> None:
            await asyncio.Event().wait()

    events = EventPublisher(None, "integrity@eu", timeout=0.05, connect=_Hanging)  # type: ignore[arg-type]
    await events.start()
    assert events.unavailable == "bus unreachable (TimeoutError)"
