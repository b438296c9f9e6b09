"""The benchmark store generator builds a store the read API answers from correctly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from stalwart.store import Store
from stalwart.store.queries import MessageFilter, counts_by_state, list_messages
from stalwart.store.schema import deliveries

_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "generate_store.py"


async def test_a_generated_store_is_searchable_and_counted(store_url: str) -> None:
    # Given a store generated with 500 messages
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(_SCRIPT), "--url", store_url, "--count", "500", "--days", "1"],
        check=True,
        capture_output=True,
    )
    store = await Store.open(store_url)
    try:
        # Then the kept state counts add up to its deliveries
        async with store.engine.connect() as conn:
            stored = await conn.scalar(select(func.count()).select_from(deliveries))
        counts = await counts_by_state(store)
        assert stored == 500
        assert sum(n for states in counts.values() for n in states.values()) == stored
        # And the message list pages through it newest first
        page = await list_messages(store, MessageFilter(), limit=50)
        assert len(page.items) == 50 and page.next_cursor is not None
    finally:
        await store.close()
