"""Retention: export first, then delete old messages with their states; keep the rest."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from store_traffic import Traffic

from stalwart.envelope import Envelope, utcnow
from stalwart.messages import Report, ReportLevel, report_topic
from stalwart.store import Store
from stalwart.store.queries import counts_by_state
from stalwart.store.retention import count_older, prune
from stalwart.store.schema import deliveries, messages, reports, transitions


async def _counts(store: Store) -> dict[str, int]:
    out = {}
    async with store.engine.connect() as conn:
        for table in (messages, deliveries, transitions, reports):
            out[table.name] = int(await conn.scalar(select(func.count()).select_from(table)) or 0)
    return out


async def test_prune_exports_then_deletes_only_what_is_older(
    store: Store, traffic: Traffic, tmp_path: Path
) -> None:
    # Given 30 messages from 100 days ago and 5 from today, each with a consumed state,
    # and an old and a new report
    old_time, now = utcnow() - timedelta(days=100), utcnow()
    old = [traffic.message(body={"i": i}, created_at=old_time) for i in range(30)]
    new = [traffic.message(body={"i": i}, created_at=now) for i in range(5)]
    steps = [traffic.step(e, "qa", "consumed") for e in old + new]
    old_report = Envelope.new(
        report_topic("info"),
        Report(level=ReportLevel.INFO, source="qa", text="old", at=old_time),
    )
    await store.write([*old, *new, traffic.lifecycle(*steps), old_report])
    cutoff = now - timedelta(days=90)
    assert await count_older(store, cutoff) == 30
    export = tmp_path / "old.jsonl.gz"
    phases: dict[str, int] = {}

    # When pruning older than 90 days with an export, in batches of 7
    result = await prune(
        store,
        cutoff,
        export=export,
        batch=7,
        progress=lambda phase, n: phases.__setitem__(phase, phases.get(phase, 0) + n),
    )

    # Then the export holds the 30 old messages with their states, and only they were deleted
    with gzip.open(export, "rt", encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    assert sorted(line["id"] for line in lines) == sorted(e.id for e in old)
    assert all(line["deliveries"][0]["state"] == "consumed" for line in lines)
    assert all(len(line["transitions"]) == 1 for line in lines)
    assert (result.exported, result.messages, result.deliveries, result.transitions) == (
        30,
        30,
        30,
        30,
    )
    assert result.reports == 1
    assert phases == {"export": 30, "delete": 30}
    left = await _counts(store)
    assert left["deliveries"] == left["transitions"] == 5
    assert left["messages"] == 5 + 2  # the new ones, and today's lifecycle and report envelopes
    assert left["reports"] == 0


async def test_prune_without_export_and_with_nothing_old_changes_nothing(
    store: Store, traffic: Traffic
) -> None:
    # Given only recent messages
    await store.write([traffic.message() for _ in range(3)])
    # When pruning older than 90 days
    result = await prune(store, utcnow() - timedelta(days=90))
    # Then nothing is deleted
    assert result.messages == 0
    assert (await _counts(store))["messages"] == 3


async def test_prune_exports_and_deletes_old_deliveries_whose_message_never_arrived(
    store: Store, traffic: Traffic, tmp_path: Path
) -> None:
    # Given 9 messages never stored, with old states for two services, and one stored
    # message and one orphan, both active today
    old_time, now = utcnow() - timedelta(days=100), utcnow()
    unseen = [traffic.message() for _ in range(9)]
    kept, recent_orphan = traffic.message(), traffic.message()
    steps = [traffic.step(e, s, "consumed", at=old_time) for e in unseen for s in ("qa", "tracker")]
    steps += [traffic.step(e, "qa", "consumed", at=now) for e in (kept, recent_orphan)]
    await store.write([kept, traffic.lifecycle(*steps)])
    export = tmp_path / "old.jsonl.gz"
    # When pruning older than 90 days with an export, in batches of 4
    result = await prune(store, now - timedelta(days=90), export=export, batch=4)
    # Then the old orphans were exported (every delivery and transition) and deleted
    with gzip.open(export, "rt", encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    assert all(line["orphan"] for line in lines)
    assert {line["id"] for line in lines} == {e.id for e in unseen}
    assert sum(len(line["deliveries"]) for line in lines) == 18
    assert sum(len(line["transitions"]) for line in lines) == 18
    assert (result.deliveries, result.transitions) == (18, 18)
    # And the recent ones, orphan or not, are kept, as are the counts of what is left
    left = await _counts(store)
    assert left["deliveries"] == left["transitions"] == 2
    assert await counts_by_state(store) == {"qa": {"consumed": 2}}
