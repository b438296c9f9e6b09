"""Helpers for the dashboard's browser tests: a live system on a free port,
a child service process, Chromium, and screenshots saved as artifacts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

from stalwart.bus import Transport, open_transport
from stalwart.config import Settings
from stalwart.dashboard import serve_dashboard
from stalwart.dashboard.auth import hash_password
from stalwart.store import Persister, PersistOptions, Store
from waiting import until

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PASSWORD = "correct horse battery staple"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveSystem:
    url: str
    settings: Settings
    transport: Transport
    store: Store
    env: dict[str, str]

    async def queue_declared(self, name: str) -> None:
        """Wait until a service has declared its queue (so publishes reach it)."""

        async def declared() -> bool:
            return name in await self.transport.queues()

        await until(declared, 30, f"queue {name!r}")


@contextlib.asynccontextmanager
async def live_system(tmp_path: Path) -> AsyncIterator[LiveSystem]:
    """Bus, store, persistence subscriber and the dashboard on a free port."""
    bus_url = f"sqlite:///{tmp_path}/bus.db"
    store_url = f"sqlite:///{tmp_path}/store.db"
    port = free_port()
    settings = Settings.model_validate(
        {
            "home": str(tmp_path),
            "bus": {"url": bus_url, "outbox": f"{tmp_path}/outbox.db"},
            "store": {"url": store_url},
            "dashboard": {
                "users": {"ops": hash_password(PASSWORD, n=2**10)},
                "secret": "e2e-dashboard-signing-key-9f3b27c1d84a56e0",
                "traffic_window": 300.0,
                "traffic_bucket": 5.0,
            },
        }
    )
    transport = open_transport(bus_url)
    await transport.start()
    store = await Store.open(store_url)
    persister = Persister(transport, store, PersistOptions(batch_interval=0.05))
    await persister.declare()  # before anything is published, so that nothing is missed
    persisting = asyncio.create_task(persister.run())
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(
        serve_dashboard(settings, f"127.0.0.1:{port}", stop, on_ready=ready.set_result)
    )
    env = {
        **os.environ,
        "STALWART_BUS_URL": bus_url,
        "STALWART_STORE_URL": store_url,
        "STALWART_HOME": str(tmp_path),
        "PYTHONPATH": str(Path(__file__).parent),
    }
    try:
        url = await asyncio.wait_for(ready, 20)
        yield LiveSystem(url.rstrip("/"), settings, transport, store, env)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 20)
        persister.stop()
        await asyncio.wait_for(persisting, 10)
        await transport.close()
        await store.close()


@contextlib.asynccontextmanager
async def child_service(
    system: LiveSystem, target: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``stalwart run target`` as a child process; killed (SIGKILL) if still alive at the end."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("stalwart")),
        "run",
        target,
        env=system.env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)


@contextlib.asynccontextmanager
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
