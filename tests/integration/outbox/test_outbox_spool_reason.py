"""The warning an outbox logs when it spools says why the broker did not confirm,
also when the reason is a timeout (whose own message is empty)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from stalwart.bus import Encoded
from stalwart.bus.outbox import OutboxTransport
from stalwart.envelope import Envelope


class _SilentBroker:
    """Connected, but never confirms a publish."""

    url = "amqp://guest:guest@broker.invalid:5672/"
    connected = True

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish_encoded(self, batch: Sequence[Encoded]) -> None:
        await asyncio.Event().wait()


async def test_a_publish_left_unconfirmed_is_spooled_with_the_timeout_as_its_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = OutboxTransport(
        _SilentBroker(),  # type: ignore[arg-type]
        tmp_path / "outbox.db",
        forward=False,
        publish_timeout=0.2,
    )
    await outbox.start()
    try:
        with caplog.at_level(logging.WARNING, logger="stalwart.bus.outbox"):
            await outbox.publish([Envelope.new("jobs.run", 1)])
        assert await outbox.pending() == 1
        assert "broker cannot confirm (no confirm within 0.2 s); spooling 1 message(s)" in (
            caplog.text
        )
    finally:
        await outbox.close()
