"""Shared fixtures: real services, skipped on a laptop, required in CI.

Tests that need RabbitMQ, PostgreSQL or Chromium ask for the fixture of
that service. When the service is absent the test is skipped, unless
``STALWART_REQUIRE_SERVICES=1`` (set by ``.ci/run``), when it fails instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from stalwart.bus.sqlite import SqliteTransport

REQUIRE = os.environ.get("STALWART_REQUIRE_SERVICES") == "1"
RABBITMQ_URL = os.environ.get("STALWART_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_DSN = os.environ.get("STALWART_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
NATS_URL = os.environ.get("STALWART_TEST_NATS", "nats://127.0.0.1:4222")
CHROMIUM = os.environ.get("STALWART_TEST_CHROMIUM", "/usr/bin/chromium")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def need(service: str, available: bool) -> None:
    """Skip (or fail under STALWART_REQUIRE_SERVICES=1) when ``service`` is absent."""
    if available:
        return
    message = f"{service} is not available on this machine"
    if REQUIRE:
        pytest.fail(f"{message}, and STALWART_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


@pytest.fixture
def rabbitmq_url() -> str:
    need("RabbitMQ (127.0.0.1:5672)", _reachable("127.0.0.1", 5672))
    return RABBITMQ_URL


@pytest.fixture
def nats_url() -> str:
    need("NATS with JetStream (127.0.0.1:4222)", _reachable("127.0.0.1", 4222))
    return NATS_URL


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    need("PostgreSQL (127.0.0.1:5432)", _reachable("127.0.0.1", 5432))
    import psycopg

    name = f"stalwart_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{POSTGRES_DSN}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_DSN}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES_DSN}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def chromium_path() -> str:
    need("Debian chromium (/usr/bin/chromium)", shutil.which(CHROMIUM) is not None)
    return CHROMIUM


@pytest.fixture
def sqlite_bus_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/bus.db"


@pytest.fixture
async def embedded_bus(sqlite_bus_url: str) -> AsyncIterator[SqliteTransport]:
    """A started embedded bus at ``sqlite_bus_url``, closed after the test."""
    transport = SqliteTransport(sqlite_bus_url)
    await transport.start()
    try:
        yield transport
    finally:
        await transport.close()


@pytest.fixture
def sqlite_store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture
def unique() -> str:
    """A short unique token for names of exchanges, queues and databases."""
    return uuid.uuid4().hex[:10]
