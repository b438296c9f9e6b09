"""Tables that read at the terminal's width, as ``kubectl get`` and ``docker ps`` do.

Rich squeezes every column of a table that is too wide, down to one character
a column, so that a topic reads vertically. Here each column says how narrow
it may go and how soon it is dropped: the least needed columns go first, the
rest keep at least their minimum and share what is left; a cell too long is
cut with an ellipsis on its line, never folded. ``wide`` keeps every column
whole, however long the lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import typer
from rich.table import Table
from rich.text import Text

from stalwart.cli._common import console

__all__ = ["Col", "WideOption", "fit_table", "print_table", "width_for"]

_GAP = 2  # cells are separated by two spaces

WideOption = Annotated[
    bool,
    typer.Option("--wide", "-w", help="Every column, ids whole, however long the lines."),
]


@dataclass(frozen=True, slots=True)
class Col:
    """One column: ``drop`` orders what goes when the width is short (highest first, 0 never).

    ``min_width`` is the narrowest the column still reads at (default: its
    header); a ``whole`` column is never cut (numbers, states, times). A
    ``wrap`` column breaks its cells between words instead, each word whole.
    """

    header: str
    drop: int = 0
    min_width: int = 0
    whole: bool = False
    wrap: bool = False
    justify: Literal["left", "right"] = "left"


def _widths(col: Col, cells: list[str]) -> tuple[int, int]:
    """(narrowest, natural) width of a column over its cells."""
    texts = [Text.from_markup(cell) for cell in cells]
    natural = max([len(col.header), *(t.cell_len for t in texts)])
    narrowest = natural if col.whole else max(col.min_width, len(col.header))
    if col.wrap:
        words = [len(word) for t in texts for word in t.plain.split()]
        narrowest = max([narrowest, *words])
    return min(narrowest, natural), natural


def fit_table(
    columns: Sequence[Col],
    rows: Sequence[Sequence[str]],
    width: int | None,
    *,
    title: str | None = None,
) -> Table:
    """A table of ``rows`` (markup strings) within ``width`` cells; ``None``: every column whole."""
    measured = [_widths(col, [row[i] for row in rows]) for i, col in enumerate(columns)]
    kept = list(range(len(columns)))
    if width is not None:
        by_drop = sorted(kept, key=lambda i: (-columns[i].drop, -i))
        while by_drop and columns[by_drop[0]].drop > 0 and _total(measured, kept, 0) > width:
            kept.remove(by_drop.pop(0))
    sizes = {i: measured[i][1] for i in kept}
    if width is not None and _total(measured, kept, 1) > width:
        sizes = {i: measured[i][0] for i in kept}
        spare = width - _total(measured, kept, 0)
        for i in sorted(kept, key=lambda i: (columns[i].drop, i)):  # most needed first
            grow = min(max(spare, 0), measured[i][1] - sizes[i])
            sizes[i] += grow
            spare -= grow
    table = Table(
        box=None,
        show_edge=False,
        pad_edge=False,
        padding=(0, _GAP // 2),
        header_style="bold",
        title=title,
        title_justify="left",
        title_style="bold",
        expand=False,
        width=_total(measured, kept, 1) if width is None else None,
    )
    for i in kept:
        col = columns[i]
        table.add_column(
            col.header,
            width=sizes[i],
            no_wrap=not col.wrap,
            overflow="fold" if col.wrap else "ellipsis",
            justify=col.justify,
        )
    for row in rows:
        table.add_row(*(row[i] for i in kept))
    return table


def _total(measured: list[tuple[int, int]], kept: list[int], which: int) -> int:
    """The table's width with each kept column at its narrowest (0) or natural (1) width."""
    return sum(measured[i][which] for i in kept) + _GAP * max(len(kept) - 1, 0)


def width_for(wide: bool) -> int | None:
    """The width tables fit in: the terminal's (``COLUMNS``; 80 off a terminal), or none."""
    return None if wide else console.width


def print_table(table: Table) -> None:
    """Print without cropping: a ``--wide`` table is as wide as its widest line."""
    console.print(table, crop=False)
