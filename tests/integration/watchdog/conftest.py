"""Fixtures for watchdog tests: a supervisor in this process, closed after the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from wd_support import Recorder

from stalwart.bus import Transport
from stalwart.watchdog import ProgramSettings, Watchdog, WatchdogSettings


@pytest.fixture
async def supervise(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Any]]:
    """Start a Watchdog over ``programs``; returns (watchdog, recorder). Closed at the end."""
    started: list[Watchdog] = []

    async def start(*programs: ProgramSettings, **options: Any) -> tuple[Watchdog, Recorder]:
        settings = WatchdogSettings(programs=list(programs), state_interval=0.2)
        watchdog = Watchdog(settings, socket_path=tmp_path / "wd.sock", **options)
        recorder = Recorder()
        watchdog.add_listener(recorder)
        await watchdog.start()
        started.append(watchdog)
        return watchdog, recorder

    yield start
    for watchdog in started:
        await asyncio.wait_for(watchdog.close(), timeout=30.0)


@pytest.fixture
def bus(embedded_bus: Transport) -> Transport:
    """The embedded bus, the one the supervised programs use."""
    return embedded_bus
