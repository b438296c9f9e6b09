"""Rendering for the integrity commands: progress bars, tables, one-line outcomes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from stalwart.cli._common import console, err_console
from stalwart.redact import redact_url

__all__ = ["ByteBar", "byte_bar", "human", "print_rows", "say"]


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
    """A rich progress bar fed from worker threads with byte counts (negative: rewind)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("", total=None)

    def start(self, label: str, total: int | None) -> None:
        self._progress.update(self._task, description=label, total=total, completed=0)

    def label(self, label: str) -> None:
        """Name the current item of a bar that counts several."""
        self._progress.update(self._task, description=label)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)


class _ConsoleLog(logging.Handler):
    """Log records printed through the bar's console, in the configured format, so
    that they land above the bar instead of glued onto it."""

    def __init__(self, console: Console, like: logging.Handler | None) -> None:
        super().__init__(like.level if like is not None else logging.NOTSET)
        if like is not None and like.formatter is not None:
            self.setFormatter(like.formatter)
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # a log line must never stop the work
            self.handleError(record)


@contextmanager
def byte_bar(on: Console | None = None) -> Iterator[ByteBar]:
    """A transient bar on ``on`` (stdout); on a terminal, log lines go through it."""
    out = on or console
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=out,
        transient=True,
    )
    root = logging.getLogger()
    saved = root.handlers[:]
    if out.is_terminal:
        root.handlers = [_ConsoleLog(out, saved[0] if saved else None)]
    try:
        with progress:
            yield ByteBar(progress)
    finally:
        root.handlers = saved


def say(text: str, tag: str = "", style: str = "", *, err: bool = False) -> None:
    """One line, ``tag`` in ``style`` first; never read as markup, since paths and
    messages may hold brackets, and with the password of any URL in it masked."""
    line = Text.assemble((tag, style), " " if tag else "", redact_url(text))
    (err_console if err else console).print(line, highlight=False, soft_wrap=True)


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "-" if value is None else redact_url(str(value))


def print_rows(
    title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool
) -> None:
    """Rows as a rich table, or as JSON lines' array for scripts."""
    if as_json:
        console.print_json(redact_url(json.dumps(list(rows), default=_cell)))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(_cell(row.get(c))) for c in columns))
    console.print(table)
