"""Panels of other parts (processes, HA, integrity) rendered from whatever they return.

Each panel calls a public query function of its part, imported like any
other (so the import graph and mypy see the seam): ``watchdog.program_states``,
``ha.status``, ``integrity.catalog.summary``. Whatever it returns is shown as
tables: a mapping or dataclass becomes sections (lists are rows, nested
mappings are one row per key, scalars a summary row), a list is one table; a
column of numeric samples (e.g. the watchdog's memory and CPU history)
becomes a sparkline. A query that fails shows as an empty state with the
reason, never a broken page. Beside it, each panel lists the part's recent
events from the store (``sys.<part>.#``), which every part publishes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.config import Settings
from stalwart.ha import status as ha_status
from stalwart.integrity.catalog import summary as integrity_summary
from stalwart.watchdog import program_states

__all__ = ["PANELS", "PanelData", "PanelQuery", "PanelSpec", "event_subject", "load_panel"]

# A part's query for its panel: the store's engine and the settings in, anything out.
PanelQuery = Callable[[AsyncEngine, Settings], Awaitable[Any]]

_log = logging.getLogger("stalwart.dashboard.panels")


@dataclasses.dataclass(frozen=True, slots=True)
class PanelSpec:
    """A panel: its page, title, the part's query function, and its event topics."""

    slug: str
    title: str
    query: PanelQuery
    events: str
    help: str


async def _processes(engine: AsyncEngine, settings: Settings) -> Any:
    return await program_states(engine, settings.store.forget_after)


async def _ha(engine: AsyncEngine, settings: Settings) -> Any:
    return await ha_status(engine)


async def _integrity(engine: AsyncEngine, settings: Settings) -> Any:
    return await integrity_summary(engine)


PANELS: dict[str, PanelSpec] = {
    "processes": PanelSpec(
        "processes",
        "Processes",
        _processes,
        "sys.watchdog.#",
        "Programs supervised by `stalwart watchdog`: state, restarts, last reason.",
    ),
    "ha": PanelSpec(
        "ha",
        "HA",
        _ha,
        "sys.ha.#",
        "Leases, fencing tokens, checkpoints and health monitors of critical services.",
    ),
    "integrity": PanelSpec(
        "integrity",
        "Integrity",
        _integrity,
        "sys.integrity.#",
        "Replicas, recent transfers, repairs and scrub runs.",
    ),
}


class PanelData(BaseModel):
    """A panel's sections of rows, or why there are none."""

    title: str
    available: bool
    note: str | None = None
    sections: dict[str, list[dict[str, Any]]] = {}


def _cell(key: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and (key.endswith("_at") or key == "since") and value > 1e9:
        return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_cell(key, v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _cell(str(k), v) for k, v in value.items()}
    return str(value)


def _row(item: Any) -> dict[str, Any]:
    raw = _plain(item)
    if not isinstance(raw, Mapping):
        raw = {"value": raw}
    row: dict[str, Any] = {}
    for key, value in raw.items():
        samples = _samples(value)
        if samples is not None:
            for name, series in samples.items():
                row[f"{key} {name}".strip()] = series
        else:
            row[str(key)] = _cell(str(key), value)
    return row


def _samples(value: Any) -> dict[str, list[float]] | None:
    """Numeric samples, or columns of sample tuples, as named series (else None)."""
    if not isinstance(value, list | tuple) or not value:
        return None
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return {"": [float(v) for v in value]}
    width = len(value[0]) if isinstance(value[0], list | tuple) else 0
    if width and all(
        isinstance(v, list | tuple)
        and len(v) == width
        and all(isinstance(x, int | float) for x in v)
        for v in value
    ):
        names = ("memory", "cpu") if width == 2 else tuple(str(i) for i in range(width))
        return {names[i]: [float(v[i]) for v in value] for i in range(width)}
    return None


def _plain(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump()
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return dataclasses.asdict(data)
    return data


def _sections(data: Any) -> dict[str, list[dict[str, Any]]]:
    data = _plain(data)
    if isinstance(data, list | tuple):
        return {"": [_row(r) for r in data]}
    if not isinstance(data, Mapping):
        return {"": [_row(data)]}
    out: dict[str, list[dict[str, Any]]] = {}
    summary: dict[str, Any] = {}
    for title, value in data.items():
        value = _plain(value)
        if isinstance(value, list | tuple) and _samples(value) is None:
            out[str(title)] = [_row(r) for r in value]
        elif isinstance(value, Mapping):
            out[str(title)] = [{"": str(k), **_row(v)} for k, v in value.items()]
        else:
            summary[str(title)] = value
    if summary:
        out = {"": [_row(summary)], **out}
    return out


_SUBJECT_KEYS = ("program", "service", "lease", "name", "object", "replica", "site")


def event_subject(body: Any) -> tuple[str | None, str | None]:
    """What a part's event concerns (``program[instance]``, a service, a lease...) and
    its reason, read from its body; None for what it does not say."""
    if not isinstance(body, Mapping):
        return None, None
    subject = next((str(body[k]) for k in _SUBJECT_KEYS if body.get(k) not in (None, "")), None)
    if subject is not None and body.get("instance") is not None:
        subject += f"[{body['instance']}]"
    reason = body.get("reason") or body.get("error")
    return subject, str(reason) if reason not in (None, "") else None


async def load_panel(
    spec: PanelSpec, settings: Settings, engine: AsyncEngine | None, timeout: float = 5.0
) -> PanelData:
    """Call the part's query; no store, or a failure, is an empty state with the reason."""
    if engine is None:
        return PanelData(title=spec.title, available=False, note="the store is not open")
    try:
        result = await asyncio.wait_for(spec.query(engine, settings), timeout)
    except Exception as exc:  # a broken panel must not break the dashboard
        _log.warning("panel %s failed: %s", spec.slug, exc, exc_info=True)
        return PanelData(title=spec.title, available=False, note=f"{spec.title} failed: {exc}")
    return PanelData(title=spec.title, available=True, sections=_sections(result))
