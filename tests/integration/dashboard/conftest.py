"""Fixtures of the dashboard's integration tests (helpers in dashboard_system.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dashboard_system import System, dashboard_config, running_system


@pytest.fixture
async def system(sqlite_bus_url: str, sqlite_store_url: str) -> AsyncIterator[System]:
    async with running_system(sqlite_bus_url, sqlite_store_url, dashboard_config()) as s:
        yield s
