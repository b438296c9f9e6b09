"""Rich rendering of the store's read models (tables, timelines, the causal tree).

Each takes the width to fit in (``None``: ``--wide``, every column whole).
Ids are shown by their last 8 characters unless wide: the short id that
``stalwart tail`` prints and ``stalwart show`` accepts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree

from stalwart.cli._columns import Col, fit_table
from stalwart.store.queries import (
    ChainNode,
    DeliveryView,
    MessageDetail,
    MessagePage,
    MessageSummary,
    ReportView,
    SentView,
)

__all__ = ["detail_view", "messages_table", "reports_table"]

_STATE_STYLE = {
    "consumed": "green",
    "failed": "yellow",
    "dead": "bold red",
    "rejected": "red",
    "expired": "magenta",
    "received": "cyan",
    "sent": "dim",
}
_LEVEL_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "debug": "dim"}


_SHORT_ID = 8


def _when(value: datetime | None, wide: bool = True) -> str:
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if wide else f"{value:%m-%d %H:%M:%S}"


def _id(message_id: str, wide: bool) -> str:
    return message_id if wide else message_id[-_SHORT_ID:]


def _states(states: dict[str, str]) -> str:
    return " ".join(
        f"{escape(service)}=[{_STATE_STYLE.get(state, 'white')}]{state}[/]"
        for service, state in sorted(states.items())
    )


_MESSAGE_COLUMNS = (
    Col("created (UTC)", drop=1, whole=True),
    Col("id", whole=True),
    Col("topic", min_width=16),
    Col("kind", drop=2, min_width=8),
    Col("sender", drop=3, min_width=10),
    Col("states", wrap=True),
)


def messages_table(page: MessagePage, width: int | None) -> Table:
    wide = width is None
    rows = [
        [
            _when(m.created_at, wide),
            _id(m.id, wide),
            escape(m.topic),
            escape(m.kind),
            escape(m.sender),
            _states(m.states),
        ]
        for m in page.items
    ]
    return fit_table(_MESSAGE_COLUMNS, rows, width)


_REPORT_COLUMNS = (
    Col("at (UTC)", drop=1, whole=True),
    Col("level", whole=True),
    Col("source", min_width=10),
    Col("text", wrap=True, min_width=20),
    Col("refs", drop=2, wrap=True),
)


def reports_table(rows: Sequence[ReportView], width: int | None) -> Table:
    cells = []
    for r in rows:
        style = _LEVEL_STYLE.get(r.level, "white")
        refs = " ".join(f"{k}={v}" for k, v in sorted(r.refs.items()))
        cells.append(
            [
                _when(r.at, width is None),
                f"[{style}]{r.level}[/]",
                escape(r.source),
                escape(r.text),
                escape(refs),
            ]
        )
    return fit_table(_REPORT_COLUMNS, cells, width)


_TIMELINE_COLUMNS = (
    Col("service", min_width=10),
    Col("state", whole=True),
    Col("attempt", drop=2, whole=True),
    Col("at (UTC)", drop=1, whole=True),
    Col("instance", drop=3, min_width=12),
    Col("reason", wrap=True, min_width=16),
)


def _timeline(sent: SentView, deliveries: Sequence[DeliveryView], width: int | None) -> Table:
    """``sent`` first (the publishing service and instance), then each service's delivery."""
    wide = width is None
    rows: list[list[str]] = [
        [
            f"[italic]{escape(sent.service)}[/]",
            f"[{_STATE_STYLE['sent']}]sent[/]",
            "",
            _when(sent.at, wide),
            escape(sent.sender),
            "",
        ]
    ]
    for d in deliveries:
        style = _STATE_STYLE.get(d.state, "white")
        rows.append(
            [
                f"[bold]{escape(d.service)}[/]",
                f"[{style}]{d.state}[/]",
                str(d.attempts),
                _when(d.last_at, wide),
                escape(d.instance or ""),
                escape(d.reason or ""),
            ]
        )
        rows.extend(
            [
                "",
                f"[dim]{t.state}[/]",
                str(t.attempt),
                f"[dim]{_when(t.at, wide)}[/]",
                escape(t.instance or ""),
                escape(t.reason or ""),
            ]
            for t in d.transitions
        )
    return fit_table(_TIMELINE_COLUMNS, rows, width, title="timeline")


def _label(m: MessageSummary, current: str, wide: bool) -> str:
    mark = "[reverse]" if m.id == current else ""
    end = "[/]" if mark else ""
    return (
        f"{mark}{_id(m.id, wide)}{end} [cyan]{escape(m.topic)}[/] [bold]{escape(m.kind)}[/] "
        f"[dim]{escape(m.sender)}[/] {_states(m.states)}"
    )


def _chain(detail: MessageDetail, wide: bool) -> Tree:
    current = detail.envelope.id
    tree = Tree("[bold]causal chain[/]")
    parent = tree
    for ancestor in detail.ancestors:
        parent = parent.add(_label(ancestor, current, wide))

    def add(node: ChainNode, into: Tree) -> None:
        branch = into.add(_label(node, current, wide))
        for child in node.children:
            add(child, branch)

    add(detail.descendants, parent)
    if detail.truncated:
        tree.add("[dim]… (chain truncated)[/]")
    return tree


def detail_view(detail: MessageDetail, width: int | None) -> RenderableType:
    envelope = detail.envelope.model_dump(mode="json", exclude={"body"})
    body = json.dumps(detail.envelope.body, indent=2, ensure_ascii=False, default=str)
    head = json.dumps(
        {**envelope, "size": detail.size, "stored_at": detail.stored_at.isoformat()}, indent=2
    )
    return Group(
        Panel(Syntax(head, "json", word_wrap=True), title="envelope", title_align="left"),
        Panel(Syntax(body, "json", word_wrap=True), title="body", title_align="left"),
        _timeline(detail.sent, detail.deliveries, width),
        _chain(detail, width is None),
    )
