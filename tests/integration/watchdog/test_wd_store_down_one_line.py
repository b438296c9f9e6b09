"""The watchdog's states kept in memory while the store is down: one warning line,
not the driver's statement and every row's parameters (39 such walls of text in an
hour's chaos campaign)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import text

from stalwart.envelope import utcnow
from stalwart.store.engine import make_engine
from stalwart.watchdog import ProgramState
from stalwart.watchdog._store import StateWriter
from waiting import until


async def test_a_failed_write_is_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    writer = StateWriter(engine, "host", "watchdog", interval=0.05)
    try:
        # Given a watchdog writing states, whose table then goes (a store that broke)
        writer.update(ProgramState("host", "watchdog", "qa", 0, "running", utcnow(), pid=1))
        await writer.start()
        await asyncio.sleep(0.3)
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE watchdog_programs"))
        caplog.set_level(logging.WARNING, logger="stalwart.watchdog.store")
        # When it writes the next state
        writer.update(ProgramState("host", "watchdog", "qa", 0, "failed", utcnow(), pid=1))
        await until(lambda: "states kept in memory" in caplog.text, 10.0, "the warning")
    finally:
        await writer.close()
        await engine.dispose()
    # Then the warning names the error in one line, without the statement
    (warning,) = {r.getMessage() for r in caplog.records if "kept in memory" in r.getMessage()}
    assert "no such table" in warning
    assert "\n" not in warning and "[SQL" not in warning
