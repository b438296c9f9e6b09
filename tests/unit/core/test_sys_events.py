"""The one vocabulary of sys.* events: every kind is produced, documented and read back.

Each (family, kind) of ``stalwart.events.FAMILIES`` must be sent by some code
in src/ (a kind nobody emits is dead), be listed in docs/wire-format.md, and
survive the trip producer -> codec -> persister rows -> ``decode_event``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from stalwart.envelope import Envelope, decode, encode
from stalwart.events import (
    FAMILIES,
    Failover,
    IntegrityEvent,
    LeaseEvent,
    MonitorTransition,
    QueueLeaderMove,
    SysEvent,
    WatchdogEvent,
    decode_event,
    event_envelope,
)
from stalwart.store._rows import build_rows

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "src" / "stalwart"

# A filled-in body per model; a model added to the vocabulary without one fails here.
SAMPLES: dict[type[SysEvent], Callable[[str], SysEvent]] = {
    LeaseEvent: lambda kind: LeaseEvent.model_validate(
        {"event": kind, "role": "service.qa", "holder": "qa@eu/1", "token": 7, "version": 2}
    ),
    MonitorTransition: lambda _: MonitorTransition(
        monitor="db",
        kind="postgres",
        from_state="healthy",
        to_state="suspect",
        reason="2 probes failed",
        url="postgresql://db-a/x",
    ),
    Failover: lambda _: Failover(
        monitor="db", kind="postgres", from_url="postgresql://a/x", to_url="postgresql://b/x"
    ),
    QueueLeaderMove: lambda _: QueueLeaderMove(queue="qa", from_node="n1@h", to_node="n2@h"),
    IntegrityEvent: lambda kind: IntegrityEvent.model_validate(
        {"event": kind, "site": "eu", "name": "a.fits", "blocks_bad": [3, 9], "size": 10}
    ),
    WatchdogEvent: lambda kind: WatchdogEvent.model_validate(
        {"event": kind, "program": "qa", "instance": 1, "evidence": {"exit_code": 3}}
    ),
}

KINDS = [
    pytest.param(family, kind, id=f"{family.name}.{kind}")
    for family in FAMILIES.values()
    for kind in family.kinds
]


def _sample(family_name: str, kind: str) -> SysEvent:
    return SAMPLES[FAMILIES[family_name].bodies[kind]](kind)


def _source_outside_vocabulary() -> str:
    return "\n".join(path.read_text() for path in SRC.rglob("*.py") if path != SRC / "events.py")


@pytest.mark.parametrize(("family", "kind"), KINDS)
def test_an_event_round_trips_through_the_persister(family, kind) -> None:
    # Given an event as its producer sends it
    event = _sample(family.name, kind)
    raw = encode(event_envelope(event, "part@eu/1", token="t"))
    # When the persister turns the delivered bytes into rows
    rows = build_rows([(decode(raw), len(raw))])
    # Then it is stored on its topic under its body's name, without a problem
    assert rows.problems == {}
    (row,) = rows.messages
    assert (row["topic"], row["kind"]) == (f"sys.{family.name}.{kind}", type(event).__name__)
    # And the stored body reads back as the same event
    assert decode_event(row["topic"], json.loads(row["body"])) == event


@pytest.mark.parametrize(("family", "kind"), KINDS)
def test_every_kind_is_produced_and_documented(family, kind) -> None:
    source = _source_outside_vocabulary()
    model = family.bodies[kind]
    only_kind_of_its_body = list(family.bodies.values()).count(model) == 1
    member = family.kinds(kind).name
    produced = re.search(rf"\b{family.kinds.__name__}\.{member}\b", source) or (
        only_kind_of_its_body and re.search(rf"\b{model.__name__}\(", source)
    )
    assert produced, f"nothing in src/ sends sys.{family.name}.{kind}: drop it or send it"
    wire = (ROOT / "docs" / "wire-format.md").read_text()
    assert f"`sys.{family.name}.{kind}`" in wire, "list it in docs/wire-format.md"


def test_a_body_on_another_kinds_topic_is_refused() -> None:
    body = _sample("ha", "lost").model_dump(mode="json")
    with pytest.raises(
        ValueError, match=re.escape("for 'sys.ha.lost' was sent on 'sys.ha.acquired'")
    ):
        decode_event("sys.ha.acquired", body)


@pytest.mark.parametrize("topic", ["sys.ha.nope", "sys.lifecycle", "sys.heartbeat.qa", "a.b.c"])
def test_a_topic_outside_the_vocabulary_is_refused(topic: str) -> None:
    with pytest.raises(ValueError, match=re.escape("is not a sys.* event topic")):
        decode_event(topic, {})


def test_a_malformed_body_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        decode_event("sys.watchdog.fatal", {"event": "fatal"})  # no program


def test_only_alarms_carry_the_alarm_header() -> None:
    quiet = _sample("watchdog", "restarted")
    alarm = quiet.model_copy(update={"alarm": True})
    envelopes = [event_envelope(e, "watchdog@eu/1") for e in (quiet, alarm)]
    assert [e.headers for e in envelopes] == [{}, {"alarm": "true"}]
    lease = event_envelope(_sample("ha", "fenced"), "qa@eu/1")
    assert isinstance(lease, Envelope) and lease.headers == {}
