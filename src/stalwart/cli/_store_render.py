"""Rich rendering of the store's read models (tables, timelines, the causal tree)."""

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

from stalwart.store.queries import (
    ChainNode,
    DeliveryView,
    MessageDetail,
    MessagePage,
    MessageSummary,
    ReportView,
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


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _states(states: dict[str, str]) -> str:
    return " ".join(
        f"{escape(service)}=[{_STATE_STYLE.get(state, 'white')}]{state}[/]"
        for service, state in sorted(states.items())
    )


def messages_table(page: MessagePage) -> Table:
    table = Table(show_lines=False, header_style="bold", expand=False)
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("id", no_wrap=True)
    for column in ("topic", "kind", "sender", "states"):
        table.add_column(column, overflow="fold")
    for m in page.items:
        table.add_row(
            _when(m.created_at),
            m.id,
            escape(m.topic),
            escape(m.kind),
            escape(m.sender),
            _states(m.states),
        )
    return table


def reports_table(rows: Sequence[ReportView]) -> Table:
    table = Table(header_style="bold")
    for column in ("at (UTC)", "level", "source", "text", "refs"):
        table.add_column(column, overflow="fold")
    for r in rows:
        style = _LEVEL_STYLE.get(r.level, "white")
        refs = " ".join(f"{k}={v}" for k, v in sorted(r.refs.items()))
        table.add_row(
            _when(r.at), f"[{style}]{r.level}[/]", escape(r.source), escape(r.text), escape(refs)
        )
    return table


def _timeline(deliveries: Sequence[DeliveryView]) -> Table:
    table = Table(title="timeline", header_style="bold", title_justify="left")
    for column in ("service", "state", "attempt", "at (UTC)", "instance", "reason"):
        table.add_column(column, overflow="fold")
    for d in deliveries:
        style = _STATE_STYLE.get(d.state, "white")
        table.add_row(
            f"[bold]{escape(d.service)}[/]",
            f"[{style}]{d.state}[/]",
            str(d.attempts),
            _when(d.last_at),
            escape(d.instance or ""),
            escape(d.reason or ""),
        )
        for t in d.transitions:
            table.add_row(
                "",
                f"[dim]{t.state}[/]",
                str(t.attempt),
                f"[dim]{_when(t.at)}[/]",
                escape(t.instance or ""),
                escape(t.reason or ""),
            )
    return table


def _label(m: MessageSummary, current: str) -> str:
    mark = "[reverse]" if m.id == current else ""
    end = "[/]" if mark else ""
    return (
        f"{mark}{m.id}{end} [cyan]{escape(m.topic)}[/] [bold]{escape(m.kind)}[/] "
        f"[dim]{escape(m.sender)}[/] {_states(m.states)}"
    )


def _chain(detail: MessageDetail) -> Tree:
    current = detail.envelope.id
    tree = Tree("[bold]causal chain[/]")
    parent = tree
    for ancestor in detail.ancestors:
        parent = parent.add(_label(ancestor, current))

    def add(node: ChainNode, into: Tree) -> None:
        branch = into.add(_label(node.message, current))
        for child in node.children:
            add(child, branch)

    add(detail.descendants, parent)
    if detail.truncated:
        tree.add("[dim]… (chain truncated)[/]")
    return tree


def detail_view(detail: MessageDetail) -> RenderableType:
    envelope = detail.envelope.model_dump(mode="json", exclude={"body"})
    body = json.dumps(detail.envelope.body, indent=2, ensure_ascii=False, default=str)
    head = json.dumps(
        {**envelope, "size": detail.size, "stored_at": detail.stored_at.isoformat()}, indent=2
    )
    return Group(
        Panel(Syntax(head, "json", word_wrap=True), title="envelope", title_align="left"),
        Panel(Syntax(body, "json", word_wrap=True), title="body", title_align="left"),
        _timeline(detail.deliveries),
        _chain(detail),
    )
