"""Fixtures of the fault suite: private PostgreSQL and RabbitMQ, and systems of processes.

Every test here is marked ``chaos``. The default run takes short counts;
``STALWART_CHAOS_FULL=1`` (``make chaos``) the full ones (see ``harness.scale``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from harness import System
from private_services import PrivatePostgres, PrivateRabbit

_Server = TypeVar("_Server", PrivatePostgres, PrivateRabbit)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.chaos)


def _absent(request: pytest.FixtureRequest, what: str) -> None:
    """Skip (or fail under STALWART_REQUIRE_SERVICES=1, see tests/conftest.py)."""
    root = Path(__file__).resolve().parents[1] / "conftest.py"
    request.config.pluginmanager.get_plugin(str(root)).need(what, False)


def _running(request: pytest.FixtureRequest, make: Callable[[], _Server]) -> Iterator[_Server]:
    try:
        server = make()
    except FileNotFoundError as exc:
        _absent(request, str(exc))
        raise
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def private_postgres(request: pytest.FixtureRequest) -> Iterator[PrivatePostgres]:
    """A running PostgreSQL of this test alone; stopped and deleted afterwards."""
    yield from _running(request, PrivatePostgres)


@pytest.fixture
def private_rabbit(request: pytest.FixtureRequest) -> Iterator[PrivateRabbit]:
    """A running RabbitMQ node of this test alone; stopped and deleted afterwards."""
    yield from _running(request, PrivateRabbit)


@pytest.fixture
async def make_system(tmp_path: Path) -> AsyncIterator[Callable[..., System]]:
    """``make_system(bus_url, store_url, service, **bus)``; its processes end with the test."""
    made: list[System] = []

    def make(bus_url: str, store_url: str, service: str, **bus: object) -> System:
        system = System(tmp_path, bus_url, store_url, service, **bus)
        made.append(system)
        return system

    try:
        yield make
    finally:
        for system in made:
            system.close()
