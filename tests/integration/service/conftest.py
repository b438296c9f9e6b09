"""Fixtures for service-runtime tests on the embedded bus: a started transport,
settings pointing at a temporary home, and a recorder of lifecycle transitions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stalwart.bus import QueueSpec, Transport
from stalwart.config import Settings, load_settings
from stalwart.envelope import DeliveryState
from stalwart.messages import LIFECYCLE_TOPIC, LifecycleBatch
from waiting import until


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = tmp_path / "stalwart.toml"
    config.write_text("")
    return load_settings(
        config,
        env={"STALWART_HOME": str(tmp_path / "home")},
        overrides={
            "bus.retry_initial": 0.05,
            "bus.retry_max": 0.2,
            "bus.max_attempts": 3,
            "security.secret": "test-secret-for-hs256-signing-key-32b",
        },
    )


class Lifecycle:
    """Collects every transition published on ``sys.lifecycle``."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], list[tuple[DeliveryState, str | None]]] = {}

    def of(self, message_id: str, service: str) -> list[DeliveryState]:
        return [s for s, _ in self.states.get((message_id, service), [])]

    def reason(self, message_id: str, service: str, state: DeliveryState) -> str:
        for s, reason in self.states.get((message_id, service), []):
            if s is state:
                return reason or ""
        raise AssertionError(f"{message_id} never reached {state}")

    async def wait(
        self,
        message_id: str,
        service: str,
        state: DeliveryState,
        timeout: float = 10.0,
        count: int = 1,
    ) -> None:
        """Wait until ``message_id`` reached ``state`` at ``service`` ``count`` times."""
        await until(
            lambda: self.of(message_id, service),
            timeout,
            f"{message_id}@{service} to reach {state} {count} time(s)",
            accept=lambda states: states.count(state) >= count,
            interval=0.02,
        )


@pytest.fixture
async def lifecycle(bus: Transport, unique: str) -> AsyncIterator[Lifecycle]:
    record = Lifecycle()
    spec = QueueSpec(name=f"lifecycle-{unique}", patterns=(LIFECYCLE_TOPIC,), ephemeral=True)
    await bus.declare(spec)

    async def collect() -> None:
        async for delivery in bus.consume(spec.name, 64):
            assert delivery.envelope is not None
            for t in LifecycleBatch.model_validate(delivery.envelope.body).transitions:
                record.states.setdefault((t.message_id, t.service), []).append((t.state, t.reason))
            await delivery.ack()

    task = asyncio.create_task(collect())
    try:
        yield record
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
