"""Tables read at 80 columns: no line longer, no value read vertically; --wide keeps all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console, RenderableType

from stalwart.bus import DeadLetter
from stalwart.cli import dlq, status, watchdog
from stalwart.cli._columns import Col, fit_table
from stalwart.cli._store_render import detail_view, messages_table, reports_table
from stalwart.envelope import Envelope
from stalwart.store.queries import (
    ChainNode,
    ComponentView,
    DeliveryView,
    MessageDetail,
    MessagePage,
    MessageSummary,
    ReportView,
    SentView,
    TransitionView,
)
from stalwart.watchdog import ProgramState

_T = datetime(2026, 12, 6, 20, 11, 5, 123000, tzinfo=UTC)
_TOPIC = "pipeline.process.jao.calibration.bandpass"
_STATES = {"pipeline-jao": "consumed", "archive-replication": "failed", "qa": "dead"}


def _render(renderable: RenderableType, width: int) -> list[str]:
    console = Console(width=width, color_system=None, force_terminal=False)
    with console.capture() as captured:
        console.print(renderable, crop=False)
    return [line.rstrip() for line in captured.get().splitlines()]


def _summary(n: int) -> MessageSummary:
    return MessageSummary(
        id=f"01930f4e-7a1b-7c3d-9e2f-0a1b2c3d4e{n:02d}",
        topic=_TOPIC,
        kind="ProcessRequestWithALongName",
        sender="dispatcher@jao/host-123456-abcdef",
        correlation_id=None,
        causation_id=None,
        created_at=_T + timedelta(seconds=n),
        size=100,
        states=_STATES,
    )


def _whole_or_cut(value: str, line: str) -> bool:
    """``value`` is on ``line`` whole, or cut with an ellipsis after a readable start."""
    if value in line:
        return True
    head = line.split("…")[0].split()[-1] if "…" in line else ""
    return len(head) >= 8 and value.startswith(head)


def _assert_reads(lines: list[str], width: int) -> None:
    assert lines and max(len(line) for line in lines) <= width
    # no column squeezed to a few characters: every state token is whole somewhere
    text = "\n".join(lines)
    for service, state in _STATES.items():
        assert f"{service}={state}" in text


@pytest.mark.parametrize("width", [80, 100])
def test_messages_read_at_the_terminal_width(width: int) -> None:
    page = MessagePage(items=[_summary(n) for n in range(3)], next_cursor=None)
    lines = _render(messages_table(page, width), width)
    _assert_reads(lines, width)
    for m in page.items:
        (line,) = [line for line in lines if m.id[-8:] in line]  # the short id, on one line
        assert _whole_or_cut(m.topic, line)
        assert f"{m.created_at:%m-%d %H:%M:%S}" in line


def test_wide_messages_show_every_column_whole() -> None:
    page = MessagePage(items=[_summary(1)], next_cursor=None)
    (_, line) = _render(messages_table(page, None), 80)
    m = page.items[0]
    for value in (m.id, m.topic, m.kind, m.sender, "2026-12-06 20:11:06.123"):
        assert value in line


def test_show_reads_at_80_columns() -> None:
    message = _summary(1)
    delivery = DeliveryView(
        service="archive-replication",
        state="failed",
        attempts=3,
        last_at=_T,
        reason="destination disk full on /archive/jao: retry after cleanup",
        instance="archive-replication@eu/host-99-abcdef",
        times={"failed": _T},
        transitions=[
            TransitionView(
                service="archive-replication",
                state="failed",
                attempt=n,
                at=_T,
                reason="disk full",
                instance="archive-replication@eu/host-99-abcdef",
            )
            for n in (1, 2, 3)
        ],
    )
    detail = MessageDetail(
        envelope=Envelope.new(_TOPIC, {"ous": "uid://A001/X1"}, kind="ProcessRequest"),
        size=100,
        stored_at=_T,
        sent=SentView(service="dispatcher", sender="dispatcher@jao/host-1", at=_T),
        deliveries=[delivery],
        ancestors=[],
        descendants=ChainNode.of(message, []),
    )
    lines = _render(detail_view(detail, 80), 80)
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert "archive-replication" in text and "failed" in text
    assert " disk full" in text and "cleanup" in text  # the reason wraps between words
    assert message.id[-8:] in text


def test_reports_read_at_80_columns() -> None:
    reports = [
        ReportView(
            id="r1",
            level="error",
            source="pipeline-calibration",
            text="calibration diverged after 40 iterations on spectral window 17 " * 2,
            refs={"ous": "uid://A001/X1234/X56"},
            host="h",
            at=_T,
        )
    ]
    lines = _render(reports_table(reports, 80), 80)
    assert max(len(line) for line in lines) <= 80
    assert "error" in "\n".join(lines) and "diverged" in "\n".join(lines)


def test_status_reads_at_80_columns() -> None:
    view = ComponentView(
        service="archive-replication",
        instance="archive-replication@eu/host-99-abcdef-0123",
        site="eu",
        host="host-99.example.org",
        pid=123456,
        started_at=_T,
        last_heartbeat=_T,
        interval=5.0,
        uptime=10.0,
        inflight=3,
        processed=1234567,
        failed=12,
        progress=None,
        patterns=[],
        stopping=True,
        age=4.2,
        availability="late",
    )
    program = ProgramState(
        host="host-99.example.org",
        watchdog="w",
        program="archive-replication",
        instance=0,
        state="running",
        updated_at=_T,
        pid=123456,
        restarts=2,
        last_event="restarted",
        last_reason="exit code 3 after 12.5 s; backoff 4 s then restarted",
        rss=52 * 2**20,
        cpu=3.0,
    )
    for table in (
        status._services_table([view], 80),
        status._programs_table([program], 80),
        watchdog._table([program], 80),
    ):
        lines = _render(table, 80)
        assert max(len(line) for line in lines) <= 80
        text = "\n".join(lines)
        assert "archive-replication" in text
        assert ("late (stopped)" in text) or ("running" in text)
    assert "52.0" in "\n".join(_render(watchdog._table([program], 80), 80))


def test_dead_letters_read_at_80_columns() -> None:
    envelope = Envelope.new(_TOPIC, {}, kind="ProcessRequest")
    letter = DeadLetter(
        envelope=envelope,
        raw=b"",
        queue="archive-replication",
        reason="handler raised RuntimeError: destination disk full on /archive/jao",
        attempts=5,
        died_at=_T,
        key=envelope.id,
    )
    lines = _render(dlq._table([letter], 80), 80)
    assert max(len(line) for line in lines) <= 80
    assert envelope.id in "\n".join(lines)  # the key `dlq retry` takes, whole


_words = st.text("abcdefghij.-", min_size=1, max_size=30)


@given(
    columns=st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 12), st.booleans(), st.booleans()),
        min_size=1,
        max_size=8,
    ),
    cells=st.lists(st.lists(_words, min_size=8, max_size=8), min_size=1, max_size=4),
    width=st.integers(20, 160),
)
def test_any_table_keeps_every_kept_cell_readable(
    columns: list[tuple[int, int, bool, bool]], cells: list[list[str]], width: int
) -> None:
    # Given columns of any drop order, minimum, and whole/wrap kind, and cells without spaces
    cols = [
        Col(f"c{i}", drop=drop if i else 0, min_width=m, whole=whole, wrap=wrap and not whole)
        for i, (drop, m, whole, wrap) in enumerate(columns)
    ]
    rows = [row[: len(cols)] for row in cells]
    table = fit_table(cols, rows, width)
    kept = [c.header for c in table.columns]
    lines = _render(table, 400)
    # Then no line exceeds the width, unless only columns never dropped are left
    if max(len(line) for line in lines) > width:
        assert all(c.drop == 0 for c in cols if c.header in kept)
    # And every cell of a whole or wrapped column is there whole (a word never split)
    for i, col in enumerate(cols):
        if col.header in kept and (col.whole or col.wrap):
            for row in rows:
                assert any(row[i] in line for line in lines)
