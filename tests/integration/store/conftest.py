"""The same store tests run on SQLite and on PostgreSQL (a fresh database per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from store_traffic import Traffic

from stalwart.bus import Transport
from stalwart.store import Store


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_store_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def bus(embedded_bus: Transport) -> Transport:
    """The subscriber tests run on the embedded bus."""
    return embedded_bus
