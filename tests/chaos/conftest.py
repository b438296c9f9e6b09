"""Fixtures of the fault suite: private PostgreSQL and RabbitMQ (tests/private_services.py),
and systems of processes.

Every test here is marked ``chaos``. The default run takes short counts;
``STALWART_CHAOS_FULL=1`` (``make chaos``) the full ones (see ``harness.scale``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from harness import System

from private_services import private_postgres, private_rabbit

__all__ = ["private_postgres", "private_rabbit"]  # fixtures offered to this directory


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups off the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.chaos)
            # One after another on one worker of a parallel run: each starts its own
            # brokers and databases and loads the machine on purpose.
            item.add_marker(pytest.mark.xdist_group("chaos"))


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
