"""Keep every row of a batch the database accepts when it refuses one of them.

A refused value (too long, a NUL byte in PostgreSQL text, text that cannot be
encoded, a constraint) rolls its whole transaction back. Only then are the
batch's rows written again in halves, recursively: every good row goes in,
and a bad row among ``n`` costs about ``2·log2(n)`` small transactions. Rows
are independent (inserts that ignore duplicates, and a delivery upsert that
gives the same result in any order), so splitting a batch changes nothing
but the number of transactions.

Each refused row is then traced back to the deliveries whose rows carried
it: each gets an error report naming the row and why, and one whose own
message row, or every row, was refused is dead-lettered with that reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from stalwart.store._rows import Row, Rows, error_report
from stalwart.store._store import StoreDataError

__all__ = ["Refusal", "Verdict", "judge", "refused_rows"]

# Each table's key (how a row is recognised in a delivery's own rows) and, after
# it, the fields a report keeps of a refused row (enough to redo it by hand).
_KEYS: Final = {
    "messages": ("id",),
    "transitions": ("message_id", "service", "state", "attempt", "at"),
    "deliveries": ("message_id", "service"),
    "components": ("service", "instance"),
    "reports": ("id",),
}
_KEPT: Final = {
    "messages": ("topic", "kind", "sender"),
    "transitions": ("reason", "instance"),
    "deliveries": ("state",),
    "components": (),
    "reports": ("source", "level"),
}
_WHAT: Final = {
    "messages": "message {id}",
    "transitions": "the {state} transition of message {message_id} at {service}",
    "deliveries": "the delivery of message {message_id} at {service}",
    "components": "the heartbeat of {service} {instance}",
    "reports": "report {id}",
}
_Item = tuple[str, Row]
_Key = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Refusal:
    """One row the database refused, and its reason."""

    table: str
    row: Row
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What becomes of one delivery: dead-lettered for ``problem`` (None: acknowledged)."""

    problem: str | None
    reports: list[Row]


def _key(table: str, row: Row) -> _Key:
    return table, tuple(row[k] for k in _KEYS[table])


def _items(rows: Rows) -> list[_Item]:
    return [
        *(("messages", r) for r in rows.messages),
        *(("transitions", r) for r in rows.transitions),
        *(("deliveries", r) for r in rows.sorted_deliveries()),
        *(("components", r) for r in rows.sorted_components()),
        *(("reports", r) for r in rows.reports),
    ]


def _gather(items: Sequence[_Item]) -> Rows:
    rows = Rows()
    for table, row in items:
        if table == "deliveries":
            rows.deliveries[(row["message_id"], row["service"])] = row
        elif table == "components":
            rows.components[(row["service"], row["instance"])] = row
        else:
            getattr(rows, table).append(row)
    return rows


async def refused_rows(write: Callable[[Rows], Awaitable[None]], rows: Rows) -> dict[_Key, Refusal]:
    """Write, in halves, every row of ``rows`` (already refused as a whole) the database takes.

    Returns the refused rows by table and key. :class:`StoreUnavailable`
    from ``write`` propagates: the caller retries the whole batch later, which
    rewrites what already went in as no-ops.
    """
    refused: dict[_Key, Refusal] = {}

    async def split(items: Sequence[_Item]) -> None:
        half = len(items) // 2
        for part in (items[:half], items[half:]):
            try:
                await write(_gather(part))
            except StoreDataError as exc:
                if len(part) > 1:
                    await split(part)
                else:
                    table, row = part[0]
                    refused[_key(table, row)] = Refusal(table, row, str(exc))

    await split(_items(rows))
    return refused


def judge(envelope_id: str, topic: str, own: Rows, refused: dict[_Key, Refusal]) -> Verdict:
    """The verdict on one delivery whose own rows are ``own``, given the batch's refusals.

    A report per refused row. Dead-lettered when its own message row
    (``envelope_id``) was refused, or every one of its effects (a ``sys.*``
    envelope's transitions, deliveries, heartbeat or report): what it came to
    say is then not in the store. Otherwise acknowledged: the rest is stored.
    """
    items = _items(own)
    mine = [refused[k] for k in (_key(t, r) for t, r in items) if k in refused]
    if not mine:
        return Verdict(None, [])
    reports = [_report(envelope_id, topic, refusal) for refusal in mine]
    effects = [(t, r) for t, r in items if not (t == "messages" and r["id"] == envelope_id)]
    lost = [r for r in mine if r.table == "messages" and r.row["id"] == envelope_id]
    if not lost and effects and len(mine) == len(effects):
        lost = mine
    return Verdict(lost[0].reason if lost else None, reports)


def _report(envelope_id: str, topic: str, refusal: Refusal) -> Row:
    """An error report naming the refused row, its carrier and why."""
    fields = {k: refusal.row[k] for k in (*_KEYS[refusal.table], *_KEPT[refusal.table])}
    what = _WHAT[refusal.table].format(**fields)
    refs = {"envelope": envelope_id, "table": refusal.table}
    refs.update((k, v) for k, v in fields.items() if v is not None)
    key = "\0".join(map(str, (envelope_id, *_key(refusal.table, refusal.row)[1], refusal.table)))
    digest = hashlib.blake2b(key.encode("utf-8", "backslashreplace"), digest_size=16)
    text = f"the store refused {what}, carried by {topic} message {envelope_id}: {refusal.reason}"
    return error_report("refused-" + digest.hexdigest(), text, refs)
