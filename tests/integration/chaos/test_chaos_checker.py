"""The campaign's checker finds a broken invariant planted in a store, and passes a clean one."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stalwart.chaos.checker import Checker, Limits
from stalwart.chaos.events import Phase, Recorder
from stalwart.chaos.journal import Entry
from stalwart.chaos.schedule import FaultKind, Planned
from stalwart.envelope import DeliveryState, Envelope, Transition, utcnow
from stalwart.integrity import Catalog, ingest_file
from stalwart.messages import LifecycleBatch
from stalwart.store import Store

_AGO = utcnow() - timedelta(minutes=10)


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    opened = await Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    await opened.close()


def _ready(ous: str) -> Envelope:
    body = {"ous": ous, "project": "p", "size_kib": 1}
    return Envelope.new("ous.ready", body, created_at=_AGO)


def _delivered(ous: str) -> Envelope:
    body = {"ous": ous, "state": "Delivered"}
    return Envelope.new("ous.state", body, created_at=_AGO + timedelta(seconds=20))


def _watchdog(event: str, program: str) -> Envelope:
    return Envelope.new(f"sys.watchdog.{event}", {"event": event, "program": program})


def _state(
    message: Envelope, state: DeliveryState, attempt: int = 1, reason: str | None = None
) -> Envelope:
    step = Transition(
        message_id=message.id, service="delivery", state=state, attempt=attempt, reason=reason
    )
    return Envelope.new("sys.lifecycle", LifecycleBatch(transitions=[step]))


def _kill(index: int, target: str) -> Entry:
    return Entry(index, Planned(1.0, FaultKind.KILL, target, 0.0), restarts=target)


async def _violations(store: Store, journal: list[Entry]) -> dict[str, list[str]]:
    checker = Checker(store.engine, _AGO - timedelta(seconds=1), Limits(unit_deadline=60.0))
    found: dict[str, list[str]] = {}
    for violation in await checker.check(journal):
        found.setdefault(violation.invariant, []).append(violation.detail)
    return found


async def test_a_clean_run_breaks_nothing(store: Store) -> None:
    unit = _ready("uid://A1/X1/X1")
    await store.write([unit, _delivered("uid://A1/X1/X1")])
    await store.write([_state(unit, DeliveryState.RECEIVED)])
    await store.write([_state(unit, DeliveryState.CONSUMED)])
    seen = "duplicate: already processed"
    await store.write([_state(unit, DeliveryState.CONSUMED, attempt=2, reason=seen)])
    kill = _kill(0, "qa")
    kill.injected_at = utcnow()
    await Recorder(store).record(1, 0, "kill", "qa", Phase.INJECTED)
    await store.write([_watchdog("exited", "qa"), _watchdog("restarted", "qa")])
    kill.healed_at = utcnow()

    assert await _violations(store, [kill]) == {}


async def test_each_planted_violation_is_found(store: Store) -> None:
    stuck, twice = _ready("uid://A1/X1/X2"), _ready("uid://A1/X1/X3")
    await store.write([stuck, twice, _delivered("uid://A1/X1/X3"), _delivered("uid://A1/X1/X3")])
    await store.write([_state(stuck, DeliveryState.RECEIVED)])
    await store.write([_state(twice, DeliveryState.CONSUMED)])
    await store.write([_state(twice, DeliveryState.CONSUMED, attempt=2)])
    await store.write([_watchdog("restarted", "persist")])
    unrecorded = _kill(0, "qa")
    unrecorded.injected_at = utcnow()

    found = await _violations(store, [unrecorded])

    assert found.keys() == {
        "final-state",
        "no-duplicate-effect",
        "units-on-time",
        "faults-recorded",
        "kills-detected",
        "restarts-accounted",
    }
    assert any("uid://A1/X1/X2 not delivered" in d for d in found["units-on-time"])
    assert sorted(found["no-duplicate-effect"]) == [
        f"{twice.id} consumed 2 times by delivery",
        "uid://A1/X1/X3 delivered 2 times, made ready 1 times",
    ]
    assert "persist restarted" in found["restarts-accounted"][0]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


async def _a_good_replica(store: Store, tmp_path: Path) -> tuple[Catalog, Path, str]:
    replica = tmp_path / "eu" / "uid_A1.fits"
    replica.parent.mkdir()
    replica.write_bytes(bytes(range(256)) * 64)
    manifest = ingest_file(replica).manifest
    catalog = Catalog(store.engine)
    await catalog.register_file(manifest)
    await catalog.set_replica(manifest.name, "eu", str(replica), "ok", verified=True)
    return catalog, replica, manifest.name


async def test_a_damaged_replica_is_found(store: Store, tmp_path: Path) -> None:
    _, replica, name = await _a_good_replica(store, tmp_path)
    assert await _violations(store, []) == {}

    _flip(replica, 100)

    found = await _violations(store, [])
    assert found.keys() == {"replicas-byte-exact"}
    assert found["replicas-byte-exact"][0].startswith(f"{name} at eu: ")


async def test_a_replica_being_retired_is_not_a_violation(store: Store, tmp_path: Path) -> None:
    # Given a product the demo's retention marked retiring and then deleted
    catalog, replica, name = await _a_good_replica(store, tmp_path)
    await catalog.retire([name])
    replica.unlink()
    # Then its missing data is a removal on purpose, not a lost replica
    assert await _violations(store, []) == {}
