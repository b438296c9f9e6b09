"""Panels of other parts: whatever their query functions return becomes tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from stalwart.config import Settings
from stalwart.dashboard.panels import PanelSpec, _sections, load_panel


@dataclass
class Program:
    program: str
    state: str
    updated_at: datetime
    history: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Status:
    now: float
    leases: list[dict[str, object]]


def test_rows_of_dataclasses_become_a_table_with_sparklines_for_samples() -> None:
    # Given watchdog-like rows carrying (memory, cpu) samples
    rows = [Program("pipe", "running", datetime(2026, 1, 1, tzinfo=UTC), [(100, 1.0), (200, 5.0)])]
    # When turned into sections
    sections = _sections(rows)
    # Then one table whose sample columns are numeric series
    (row,) = sections[""]
    assert row["program"] == "pipe" and row["updated_at"].startswith("2026-01-01T00:00:00")
    assert row["history memory"] == [100.0, 200.0] and row["history cpu"] == [1.0, 5.0]


def test_a_status_object_becomes_a_summary_and_one_section_per_list() -> None:
    sections = _sections(Status(now=1.7e9, leases=[{"role": "dispatcher", "acquired_at": 1.7e9}]))
    assert sections[""] == [{"now": 1.7e9}]
    assert sections["leases"][0]["acquired_at"].startswith("2023-11-14T")


def test_nested_mappings_become_one_row_per_key() -> None:
    sections = _sections({"files": 3, "replicas": {"eu": {"ok": 2}, "na": {"bad": 1}}})
    assert sections["replicas"] == [{"": "eu", "ok": 2}, {"": "na", "bad": 1}]
    assert sections[""] == [{"files": 3}]


async def _failing(engine: object, settings: Settings) -> object:
    raise RuntimeError("the part's table is missing")


async def test_a_failing_part_does_not_break_the_page() -> None:
    spec = PanelSpec("x", "X", _failing, "sys.x.#", "help")
    panel = await load_panel(spec, Settings(), "engine")  # type: ignore[arg-type]
    assert not panel.available and "failed" in (panel.note or "")
    assert "table is missing" in (panel.note or "")


CALLS: list[object] = []


async def rows(engine: object, settings: Settings) -> list[dict[str, object]]:
    CALLS.append(engine)
    return [{"program": "p"}]


async def test_a_part_gets_the_engine_and_is_not_called_without_one() -> None:
    spec = PanelSpec("p", "Processes", rows, "sys.watchdog.#", "h")
    # Given no store, Then the part is not called
    panel = await load_panel(spec, Settings(), None)
    assert not panel.available and "store" in (panel.note or "") and CALLS == []
    # Given an engine (any object here), Then it is passed and its rows shown
    panel = await load_panel(spec, Settings(), "engine")  # type: ignore[arg-type]
    assert panel.available and panel.sections == {"": [{"program": "p"}]}
    assert CALLS == ["engine"]
