"""Forwarded rows are marked, not deleted range by range: a drain pays for their
removal once, when the table empties (SQLite's truncation), and nothing below
the mark is ever read, counted or sent again — nor anything above it hidden."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stalwart.bus.outbox import _spool as spool_module
from stalwart.bus.outbox import spool_status
from stalwart.bus.outbox._spool import Spool

A, B = "nats://a:4222/", "nats://b:4222/"


def _rows(spool: Spool, count: int) -> None:
    spool.append([(f"m{n}", "jobs.run", b"x" * 64) for n in range(count)])


def _stored(path: Path, bus: str | None = None) -> int:
    """Rows physically in the file (of ``bus``, or of all)."""
    with sqlite3.connect(path) as db:
        where, args = ("WHERE bus IS ?", (bus,)) if bus else ("", ())
        return int(db.execute(f"SELECT count(*) FROM outbox {where}", args).fetchone()[0])


def test_forwarded_rows_are_not_read_again_and_go_at_once_when_nothing_else_waits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    spool = Spool(path, bus=A)
    _rows(spool, 10)
    # When the first half is forwarded, Then it is never read or counted again
    spool.mark_forwarded(5)
    assert [row.seq for row in spool.head(100)] == [6, 7, 8, 9, 10]
    assert spool.pending() == 5 and spool.status().pending == 5
    # And a process opening the file afterwards sees the same
    assert Spool(path, bus=A).pending() == 5
    # When the rest is forwarded, Then the table is emptied
    spool.mark_forwarded(10)
    assert (_stored(path), spool.pending()) == (0, 0)
    # And a row spooled next is above the mark: read and counted
    _rows(spool, 1)
    assert [row.seq for row in spool.head(100)] == [11] and spool.pending() == 1


def test_one_bus_forwarding_never_hides_or_removes_another_bus_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "_PURGE_EVERY", 8)
    path = tmp_path / "outbox.db"
    a, b = Spool(path, bus=A), Spool(path, bus=B)
    _rows(a, 5)
    _rows(b, 3)
    # When bus A's rows are forwarded, with B's still waiting in the same file
    a.mark_forwarded(5)
    # Then A has nothing pending, B all of its rows, in every view
    assert (a.pending(), b.pending()) == (0, 3)
    assert [(s.bus, s.pending) for s in spool_status(path)] == [(B, 3)]
    assert [row.seq for row in b.head(100)] == [6, 7, 8]
    # And A's forwarded rows wait to be removed together, until enough gathered
    assert _stored(path, A) == 5
    _rows(a, 4)
    a.mark_forwarded(12)
    assert (_stored(path, A), _stored(path, B), a.pending(), b.pending()) == (0, 3, 0, 3)


def test_rows_adopted_from_below_the_mark_are_forwarded(tmp_path: Path) -> None:
    # Given rows whose bus was never recorded (an older stalwart's), oldest in the file
    path = tmp_path / "outbox.db"
    unknown = Spool(path, bus=None)
    _rows(unknown, 2)
    # And a bus that forwarded newer rows of its own (the old ones keep the table full)
    a = Spool(path, bus=A)
    _rows(a, 3)
    a.mark_forwarded(5)
    assert a.pending() == 0
    # When the operator adopts the old rows for that bus
    assert a.adopt() == 2
    # Then they are read and counted, though their sequence is below the mark
    assert [row.seq for row in a.head(100)] == [1, 2] and a.pending() == 2
