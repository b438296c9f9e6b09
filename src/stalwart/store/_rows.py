"""Envelopes -> table rows, in pure Python (no database), so it is cheap to test.

A batch's transitions are folded per (message, service) here with the same
join the SQL upsert applies, so that one statement never touches a row twice
and the result does not depend on the order in which transitions arrive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from stalwart.envelope import Envelope, Transition, state_rank, utcnow
from stalwart.messages import (
    HEARTBEAT_PREFIX,
    LIFECYCLE_TOPIC,
    REPORT_PREFIX,
    Heartbeat,
    LifecycleBatch,
    Report,
    ReportLevel,
)
from stalwart.store.schema import STATE_COLUMNS

__all__ = [
    "LEVEL_RANK",
    "PERSIST_SOURCE",
    "SEARCH_CHARS",
    "JsonText",
    "Rows",
    "build_rows",
    "error_report",
    "fold_transition",
    "printable",
    "sender_service",
]

SEARCH_CHARS: Final = 2000
LEVEL_RANK: Final = {level.value: rank for rank, level in enumerate(ReportLevel)}
PERSIST_SOURCE: Final = "stalwart-persist"  # the source of the subscriber's own reports
_CONTROL: Final = re.compile("[\x00-\x1f\x7f]")

Row = dict[str, Any]


def sender_service(sender: str) -> str:
    """The service part of ``service@site/instance``."""
    return sender.split("@", 1)[0]


@dataclass(slots=True)
class Rows:
    """Everything one batch writes; ``problems`` maps a batch index to why its body is bad."""

    messages: list[Row] = field(default_factory=list)
    transitions: list[Row] = field(default_factory=list)
    deliveries: dict[tuple[str, str], Row] = field(default_factory=dict)
    components: dict[tuple[str, str], Row] = field(default_factory=dict)
    reports: list[Row] = field(default_factory=list)
    problems: dict[int, str] = field(default_factory=dict)

    def sorted_deliveries(self) -> list[Row]:
        """In key order, so concurrent writers lock rows in the same order (no deadlock)."""
        return [self.deliveries[key] for key in sorted(self.deliveries)]

    def sorted_components(self) -> list[Row]:
        return [self.components[key] for key in sorted(self.components)]


class JsonText(str):
    """A value already serialised to JSON text; the writer passes it through as is."""

    __slots__ = ()


def message_row(env: Envelope, size: int, now: datetime) -> Row:
    body = (
        None
        if env.body is None
        else JsonText(json.dumps(env.body, ensure_ascii=False, default=str))
    )
    return {
        "id": env.id,
        "topic": env.topic,
        "kind": env.kind,
        "sender": env.sender,
        "sender_service": sender_service(env.sender),
        "correlation_id": env.correlation_id,
        "causation_id": env.causation_id,
        "reply_to": env.reply_to,
        "created_at": env.created_at,
        "expires_at": env.expires_at,
        "stored_at": now,
        "headers": env.headers,
        "body": body,
        "size": size,
        "attempt": env.attempt,
        "signed": env.token is not None,
        "search": f"{env.topic} {env.kind} {env.sender} {(body or '')[:SEARCH_CHARS]}",
    }


def printable(value: object, limit: int) -> str:
    """``value`` as text any database stores: control characters and lone surrogates
    escaped (``\\x00``, ``\\ud800``), at most ``limit`` characters."""
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_report(report_id: str, text: str, refs: Mapping[str, object]) -> Row:
    """An ``error`` report of the subscriber about data it could not store as it came.

    Everything in it is :func:`printable`, so the database never refuses it.
    """
    return {
        "id": report_id,
        "level": ReportLevel.ERROR.value,
        "level_rank": LEVEL_RANK[ReportLevel.ERROR.value],
        "source": PERSIST_SOURCE,
        "text": printable(text, 2000),
        "refs": {k: printable(v, 500) for k, v in refs.items()},
        "host": None,
        "at": utcnow(),
    }


def _delivery_row(t: Transition) -> Row:
    row: Row = dict.fromkeys(STATE_COLUMNS.values())
    row.update(
        message_id=t.message_id,
        service=t.service,
        state=t.state.value,
        state_rank=state_rank(t.state),
        last_at=t.at,
        attempts=t.attempt,
        reason=t.reason,
        instance=t.instance,
        topic=t.topic,
        message_created_at=t.message_created_at,
    )
    row[STATE_COLUMNS[t.state.value]] = t.at
    return row


def fold_transition(current: Row | None, t: Transition) -> Row:
    """Join ``t`` into a delivery row: forward-only state, max attempts, latest time per state.

    The winning transition (highest state rank, then latest time) supplies the
    state, its reason and instance. Commutative, associative and idempotent,
    exactly like the SQL upsert in :mod:`stalwart.store._writer`. ``t`` sets
    only its own state's time, so only that column is compared (the hot path
    of every lifecycle batch).
    """
    if current is None:
        return _delivery_row(t)
    merged = dict(current)
    state = t.state.value
    rank = state_rank(t.state)
    if (rank, t.at) > (current["state_rank"], current["last_at"]):
        merged.update(
            state=state, state_rank=rank, last_at=t.at, reason=t.reason, instance=t.instance
        )
    merged["attempts"] = max(current["attempts"], t.attempt)
    column = STATE_COLUMNS[state]
    if current[column] is None or t.at > current[column]:
        merged[column] = t.at
    merged["topic"] = current["topic"] or t.topic
    merged["message_created_at"] = current["message_created_at"] or t.message_created_at
    return merged


def _transition_row(t: Transition) -> Row:
    return {
        "message_id": t.message_id,
        "service": t.service,
        "state": t.state.value,
        "attempt": t.attempt,
        "at": t.at,
        "reason": t.reason,
        "instance": t.instance,
    }


def _component_row(env: Envelope, hb: Heartbeat) -> Row:
    return {
        "service": hb.service,
        "instance": hb.instance,
        "site": hb.site,
        "host": hb.host,
        "pid": hb.pid,
        "started_at": hb.started_at,
        "last_heartbeat": env.created_at,
        "interval": hb.interval,
        "uptime": hb.uptime,
        "inflight": hb.inflight,
        "processed": hb.processed,
        "failed": hb.failed,
        "progress": hb.progress,
        "patterns": list(hb.patterns),
        "stopping": hb.stopping,
    }


def _report_row(env: Envelope, report: Report) -> Row:
    return {
        "id": env.id,
        "level": report.level.value,
        "level_rank": LEVEL_RANK[report.level.value],
        "source": report.source,
        "text": report.text,
        "refs": dict(report.refs),
        "host": report.host,
        "at": report.at,
    }


def _add_system(rows: Rows, env: Envelope) -> None:
    """Apply a ``sys.*`` body; raises ValidationError when it does not fit its model."""
    if env.topic == LIFECYCLE_TOPIC:
        batch = LifecycleBatch.model_validate(env.body)
        for t in batch.transitions:
            rows.transitions.append(_transition_row(t))
            key = (t.message_id, t.service)
            rows.deliveries[key] = fold_transition(rows.deliveries.get(key), t)
    elif env.topic.startswith(HEARTBEAT_PREFIX + "."):
        hb = Heartbeat.model_validate(env.body)
        row = _component_row(env, hb)
        key = (hb.service, hb.instance)
        old = rows.components.get(key)
        if old is None or row["last_heartbeat"] >= old["last_heartbeat"]:
            rows.components[key] = row
    elif env.topic.startswith(REPORT_PREFIX + "."):
        rows.reports.append(_report_row(env, Report.model_validate(env.body)))


def build_rows(items: Sequence[tuple[Envelope, int]]) -> Rows:
    """Rows for ``(envelope, encoded size)`` pairs; a bad system body becomes a problem."""
    now = utcnow()
    rows = Rows()
    for index, (env, size) in enumerate(items):
        rows.messages.append(message_row(env, size, now))
        if not env.topic.startswith("sys."):
            continue
        try:
            _add_system(rows, env)
        except ValidationError as exc:
            rows.problems[index] = (
                f"{env.topic} body is not a valid {env.kind}: {exc.error_count()} error(s), "
                f"first: {exc.errors()[0]['msg']}"
            )
    return rows
