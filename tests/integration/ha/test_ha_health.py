"""The monitor state machine with real command probes, a SQLite store and the embedded bus.

The "critical service" here is a file: ``test -e FILE`` is its probe and
``touch FILE`` its repair, so each test can break and mend it at will.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.bus import QueueSpec, Transport
from stalwart.envelope import Envelope
from stalwart.ha import HealthMonitors, HealthState, Monitor, MonitorSettings, active_url, status
from stalwart.ha.health import check_transition
from stalwart.service import EventPublisher
from stalwart.store.engine import make_engine
from waiting import until

H, S, R, F = (
    HealthState.HEALTHY,
    HealthState.SUSPECT,
    HealthState.RECOVERING,
    HealthState.FAILED,
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    yield engine
    await engine.dispose()


@pytest.fixture
async def bus(embedded_bus: Transport) -> Transport:
    await embedded_bus.declare(QueueSpec(name="watch", patterns=("sys.ha.#",)))
    return embedded_bus


async def _events(bus: Transport, count: int) -> list[Envelope]:
    got: list[Envelope] = []
    deliveries = bus.consume("watch", 16)
    async for delivery in deliveries:
        assert delivery.envelope is not None
        got.append(delivery.envelope)
        await delivery.ack()
        if len(got) == count:
            break
    await deliveries.aclose()  # type: ignore[attr-defined]
    return got


def _settings(*files: Path, **options: object) -> MonitorSettings:
    values: dict[str, object] = {
        "name": "archive",
        "kind": "command",
        "urls": [f"test -e {f}" for f in files],
        "interval": 0.05,
        "timeout": 5.0,
        "suspect_after": 1,
        "repair_timeout": 0.3,
    }
    values.update(options)
    return MonitorSettings.model_validate(values)


def _moves(monitor: Monitor) -> list[tuple[HealthState, HealthState]]:
    return [(a, b) for a, b, _ in monitor.transitions]


async def test_a_blip_goes_suspect_and_back(
    tmp_path: Path, engine: AsyncEngine, bus: Transport
) -> None:
    flag = tmp_path / "up"
    flag.touch()
    monitor = Monitor(_settings(flag), engine, EventPublisher(bus, "t@local/1"))
    assert await monitor.step() is H
    # When one probe fails and the next answers
    flag.unlink()
    assert await monitor.step() is S
    flag.touch()
    # Then the service was only suspect
    assert await monitor.step() is H
    assert _moves(monitor) == [(H, S), (S, H)]
    assert [e.body["to_state"] for e in await _events(bus, 2)] == ["suspect", "healthy"]


async def test_repair_command_brings_it_back(
    tmp_path: Path, engine: AsyncEngine, bus: Transport
) -> None:
    flag = tmp_path / "up"
    settings = _settings(flag, repair=["touch", str(flag)])
    monitor = Monitor(settings, engine, EventPublisher(bus, "t@local/1"))
    # Given the service is down
    assert await monitor.step() is S
    # When the failure is confirmed, Then the repair runs and it is healthy again
    assert await monitor.step() is H
    assert _moves(monitor) == [(H, S), (S, R), (R, H)]
    assert "repaired" in monitor.transitions[-1][2]
    assert flag.exists()
    # And the transitions are stored for the dashboard, newest first
    shown = await status(engine)
    assert [(t.from_state, t.to_state) for t in shown.transitions] == [
        ("recovering", "healthy"),
        ("suspect", "recovering"),
        ("healthy", "suspect"),
    ]
    assert [(m.name, m.state, m.kind) for m in shown.monitors] == [
        ("archive", "healthy", "command")
    ]


async def test_fail_over_to_the_backup_when_repair_fails(
    tmp_path: Path, engine: AsyncEngine, bus: Transport
) -> None:
    primary, backup = tmp_path / "primary", tmp_path / "backup"
    backup.touch()
    settings = _settings(primary, backup, repair=["false"])
    monitor = Monitor(settings, engine, EventPublisher(bus, "t@local/1"))
    # Given the primary is down and cannot be repaired
    assert await monitor.step() is S
    # When recovery runs, Then it fails over to the backup
    assert await monitor.step() is H
    assert monitor.url == f"test -e {backup}"
    assert "failed over" in monitor.transitions[-1][2]
    # And clients can read the URL to use, and a failover event was published
    assert await active_url(engine, "archive") == f"test -e {backup}"
    events = await _events(bus, 4)
    failover = [e for e in events if e.topic == "sys.ha.failover"]
    assert len(failover) == 1
    assert failover[0].body["to_url"] == f"test -e {backup}"
    # And a restarted monitor resumes on the backup
    again = Monitor(settings, engine, EventPublisher(None, "t@local/1"))
    await again.load()
    assert again.url == f"test -e {backup}"


async def test_nothing_answers_then_failed_until_it_comes_back(
    tmp_path: Path, engine: AsyncEngine
) -> None:
    primary, backup = tmp_path / "primary", tmp_path / "backup"
    monitor = Monitor(_settings(primary, backup), engine, EventPublisher(None, "t@local/1"))
    assert await monitor.step() is S
    # When neither repair nor failover works
    assert await monitor.step() is F
    assert "every backup failed" in monitor.transitions[-1][2]
    assert await monitor.step() is F
    # Then when the backup answers again, the monitor fails over from failed
    backup.touch()
    assert await monitor.step() is H
    assert _moves(monitor) == [(H, S), (S, R), (R, F), (F, R), (R, H)]


async def test_monitors_run_in_owned_tasks_until_stopped(
    tmp_path: Path, engine: AsyncEngine
) -> None:
    flag = tmp_path / "up"
    group = HealthMonitors(
        [_settings(flag, repair=["touch", str(flag)])], engine, EventPublisher(None, "t@l/1")
    )
    group.start()
    try:
        # When the monitors run on their own, Then the missing file is repaired
        await until(
            lambda: flag.exists() and group.monitors[0].state is H,
            10.0,
            "the file repaired and the monitor healthy",
        )
        assert flag.exists()
        assert _moves(group.monitors[0]) == [(H, S), (S, R), (R, H)]
    finally:
        await group.stop()


def test_only_the_machine_s_transitions_are_allowed() -> None:
    check_transition(H, S)
    with pytest.raises(ValueError, match="cannot go from healthy to failed"):
        check_transition(H, F)
    with pytest.raises(ValueError, match="allowed"):
        check_transition(S, F)
