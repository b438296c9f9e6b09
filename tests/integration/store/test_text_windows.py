"""Full-text search through the newest-first windows gives the same pages as without them."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from stalwart.envelope import Envelope, utcnow
from stalwart.store import Store, queries
from stalwart.store.queries import MessageFilter, list_messages


async def _all_pages(store: Store, words: str) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await list_messages(store, MessageFilter(text=words), limit=3, after=cursor)
        ids += [m.id for m in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return ids


async def test_text_windows_match_the_full_search_whatever_the_insert_order(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 300 messages written in shuffled time order (rowids do not follow
    # created_at), a third of them containing both words, some sharing a time
    t0 = utcnow() - timedelta(hours=1)
    envs = [
        Envelope.new(
            "pipeline.process.eu",
            {"note": "bandpass mosaic" if i % 3 == 0 else "flagging"},
            created_at=t0 + timedelta(seconds=i // 2),
        )
        for i in range(300)
    ]
    random.Random(7).shuffle(envs)
    for start in range(0, len(envs), 40):
        await store.write(envs[start : start + 40])
    # When the pages are listed with small windows and with none (the full match)
    monkeypatch.setattr(queries, "TEXT_WINDOWS", (30, 120))
    windowed = await _all_pages(store, "bandpass mosaic")
    monkeypatch.setattr(queries, "TEXT_WINDOWS", ())
    full = await _all_pages(store, "bandpass mosaic")
    # Then they are the same 100 messages in the same newest-first order
    expected = sorted(
        (e for e in envs if e.body == {"note": "bandpass mosaic"}),
        key=lambda e: (e.created_at, e.id),
        reverse=True,
    )
    assert windowed == full == [e.id for e in expected]
