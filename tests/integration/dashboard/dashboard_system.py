"""Helpers: a real little system for dashboard tests: the embedded bus, a SQLite store,
the persistence subscriber, and the dashboard app driven through httpx."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from stalwart.bus import Transport, open_transport
from stalwart.config import Settings
from stalwart.dashboard import DashboardSettings, create_app
from stalwart.dashboard.auth import hash_password
from stalwart.dashboard.storesource import StoreSource
from stalwart.envelope import Envelope
from stalwart.service import Service, ServiceRunner
from stalwart.store import Persister, PersistOptions, Store
from waiting import until

_log = logging.getLogger("tests.dashboard")
PASSWORD = "correct horse battery staple"
_HASH = hash_password(PASSWORD, n=2**10)


@dataclass
class System:
    """The running pieces a dashboard test talks to."""

    app: FastAPI
    client: httpx.AsyncClient
    transport: Transport
    store: Store
    source: StoreSource

    async def publish(self, *envelopes: Envelope) -> None:
        await self.transport.publish(list(envelopes))

    async def stored(self, message_id: str) -> None:
        async def found() -> bool:
            return await self.source.get_message(message_id) is not None

        await until(found, 30, f"message {message_id} in the store")

    async def login(self, user: str = "ops", password: str = PASSWORD) -> httpx.Response:
        page = await self.client.get("/login")
        token = csrf_from(page.text)
        return await self.client.post(
            "/login", data={"user": user, "password": password, "csrf_token": token, "next": "/"}
        )


def csrf_from(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


@contextlib.asynccontextmanager
async def running_system(
    bus_url: str,
    store_url: str,
    config: DashboardSettings,
    bind: str = "127.0.0.1:8321",
    settings: Settings | None = None,
) -> AsyncIterator[System]:
    transport = open_transport(bus_url)
    await transport.start()
    store = await Store.open(store_url)
    persister = Persister(transport, store, PersistOptions(batch_interval=0.05))
    await persister.declare()  # before anything is published, so that nothing is missed
    persisting = asyncio.create_task(persister.run())
    source = StoreSource.of(store)
    app = create_app(
        settings or Settings(), bind=bind, config=config, source=source, transport=transport
    )
    try:
        async with app.router.lifespan_context(app):
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)),
                base_url="http://127.0.0.1:8321",
            )
            async with client:
                yield System(app, client, transport, store, source)
    finally:
        persister.stop()
        await asyncio.wait_for(persisting, 10)
        await transport.close()
        await store.close()


def dashboard_config(**changes: Any) -> DashboardSettings:
    base: dict[str, Any] = {
        "users": {"ops": _HASH},
        "secret": "t3st-dashboard-s1gning-key-0123456789abcdefXYZ",
        "traffic_window": 120.0,
        "traffic_bucket": 5.0,
        "live_batch_interval": 0.05,
    }
    return DashboardSettings(**{**base, **changes})


@contextlib.asynccontextmanager
async def running_service(
    system: System, service: Service, settings: Settings | None = None
) -> AsyncIterator[ServiceRunner]:
    """``service`` served in this process on the system's bus until the block ends."""
    runner = ServiceRunner(service, system.transport, settings or Settings())
    await runner.start()
    try:
        yield runner
    finally:
        # Bounded: on Python 3.11 a cancellation racing a heartbeat publish can be
        # lost inside the runtime's wait_for, leaving stop() waiting forever.
        try:
            await asyncio.wait_for(runner.stop(grace=2.0), 10)
        except TimeoutError:
            _log.warning("service %s did not stop within 10 s", service.name)


async def logged_in_csrf(system: System) -> str:
    """Log in as ops and return the CSRF token for API actions."""
    response = await system.login()
    assert response.status_code == 303, response.text
    page = await system.client.get("/dead-letters")
    return csrf_from(page.text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_settings(home: Path, **dashboard: Any) -> Settings:
    """Settings for a dashboard served for real, on the embedded bus and a SQLite store."""
    return Settings.model_validate(
        {
            "home": str(home),
            "bus": {"url": f"sqlite:///{home}/bus.db", "outbox": f"{home}/outbox.db"},
            "store": {"url": f"sqlite:///{home}/store.db"},
            "dashboard": {"users": {"ops": _HASH}, **dashboard},
        }
    )
