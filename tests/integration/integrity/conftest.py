"""Fixtures for integrity on real components: a temporary home with the embedded
bus and store, small ingest options, and a collector of ``sys.integrity.*`` events."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from integrity_support import BLOCK

from stalwart.bus import QueueSpec, Transport
from stalwart.config import Settings, load_settings
from stalwart.integrity.catalog import Catalog
from waiting import until


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def config_file(tmp_path: Path, home: Path) -> Path:
    config = tmp_path / "stalwart.toml"
    config.write_text(
        f'home = "{home}"\nsite = "jao"\n\n[integrity]\nblock_size = "64KiB"\n'
        "data_blocks = 4\nparity_blocks = 2\nbackoff_initial = 0.01\nbackoff_max = 0.05\n"
    )
    return config


@pytest.fixture
def settings(config_file: Path) -> Settings:
    return load_settings(config_file, env={})


@pytest.fixture
async def catalog(settings: Settings) -> AsyncIterator[Catalog]:
    opened = await Catalog.open(settings.store.url)
    try:
        yield opened
    finally:
        await opened.close()


class Events:
    """Every ``sys.integrity.*`` body seen on the bus, in arrival order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [body for topic, body in self.seen if topic == f"sys.integrity.{kind}"]

    async def wait(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        await until(
            lambda: self.seen,
            timeout,
            f"{count} {kind} event(s)",
            accept=lambda _: len(self.of(kind)) >= count,
            interval=0.02,
        )
        return self.of(kind)


@pytest.fixture
async def events(bus: Transport, unique: str) -> AsyncIterator[Events]:
    record = Events()
    spec = QueueSpec(
        name=f"integrity-events-{unique}", patterns=("sys.integrity.#",), ephemeral=True
    )
    await bus.declare(spec)

    async def collect() -> None:
        async for delivery in bus.consume(spec.name, 64):
            if delivery.envelope is not None:
                record.seen.append((delivery.envelope.topic, delivery.envelope.body))
            await delivery.ack()

    task = asyncio.create_task(collect())
    try:
        yield record
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[..., tuple[Path, bytes]]:
    def make(folder: str, name: str = "f.bin", size: int = BLOCK * 9 + 77) -> tuple[Path, bytes]:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        (root / name).write_bytes(data)
        return root / name, data

    return make
