"""Rendering for the integrity commands: progress bars, tables, one-line outcomes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from stalwart.cli._common import console

__all__ = ["ByteBar", "byte_bar", "human", "print_rows"]


def human(n: int | float | None) -> str:
    """Bytes as a short human figure (1.5 GiB)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


class ByteBar:
    """A rich progress bar fed from worker threads with byte counts."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("", total=None)

    def start(self, label: str, total: int | None) -> None:
        self._progress.update(self._task, description=label, total=total, completed=0)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)


@contextmanager
def byte_bar() -> Iterator[ByteBar]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with progress:
        yield ByteBar(progress)


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "-" if value is None else str(value)


def print_rows(
    title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool
) -> None:
    """Rows as a rich table, or as JSON lines' array for scripts."""
    if as_json:
        console.print_json(json.dumps(list(rows), default=_cell))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)
