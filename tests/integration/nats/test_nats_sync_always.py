"""The durability docs/nats.md recommends where one server must keep every
acknowledged message through a power loss: ``sync_interval: always``. The server
really runs with it, stalwart works on it unchanged, and a bad value is refused
with the server's own reason."""

from __future__ import annotations

import pytest

from stalwart.bus import QueueSpec
from stalwart.bus.nats import NatsTransport
from stalwart.dev.nats import PrivateNats
from stalwart.envelope import Envelope


async def test_stalwart_publishes_and_consumes_on_a_server_that_fsyncs_every_write(
    unique: str,
) -> None:
    with PrivateNats(sync_interval="always") as server:
        assert server.jetstream_config()["sync_always"] is True
        bus = NatsTransport(server.url, exchange=f"test-sync-{unique}")
        await bus.start()
        try:
            await bus.declare(QueueSpec("svc", ("t.x",)))
            sent = [Envelope.new("t.x", {"n": n}) for n in range(20)]
            await bus.publish(sent)
            got: list[str] = []
            async for delivery in bus.consume("svc", 10):
                assert delivery.envelope is not None
                got.append(delivery.envelope.id)
                await delivery.ack()
                if len(got) == len(sent):
                    break
            assert sorted(got) == sorted(e.id for e in sent)
        finally:
            await bus.close()


def test_a_sync_interval_the_server_refuses_says_why() -> None:
    with pytest.raises(RuntimeError, match=r"exited: .*sync_interval"), PrivateNats("sometimes"):
        pass
