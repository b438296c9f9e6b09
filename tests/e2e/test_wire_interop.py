"""Wire interoperability: a plain client in its own process, knowing only
docs/wire-format.md, talks to a stalwart service both ways: pika over
RabbitMQ, nats-py over NATS JetStream."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from amqp_support import private_exchange
from nats_support import drop_streams
from stalwart.bus import open_transport
from stalwart.config import load_settings
from stalwart.service import Context, Service, ServiceRunner

pytestmark = pytest.mark.rabbitmq

CLIENT = Path(__file__).with_name("wire_client.py")
NATS_CLIENT = Path(__file__).with_name("nats_wire_client.py")


class Ask(BaseModel):
    question: str
    n: int


class Answer(BaseModel):
    answer: int
    seen_origin: str


class Wire(BaseModel):
    """A broker for the test: its URL, a private exchange or namespace, its client."""

    url: str
    exchange: str
    client: Path
    origin: str  # what the client puts in its request's headers


@pytest.fixture(params=["amqp", "nats"])
async def wire(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Wire]:
    if request.param == "amqp":
        url = request.getfixturevalue("rabbitmq_url")
        async with private_exchange(url, "wire", unique, extra=("wire-client",)) as name:
            yield Wire(url=url, exchange=name, client=CLIENT, origin="pika")
        return
    url = request.getfixturevalue("nats_url")
    try:
        yield Wire(url=url, exchange=f"test-wire-{unique}", client=NATS_CLIENT, origin="nats-py")
    finally:
        await drop_streams(url, f"test-wire-{unique}")


async def test_a_foreign_client_and_a_service_understand_each_other(
    wire: Wire, unique: str, tmp_path: Path
) -> None:
    # Given a stalwart service on the broker answering 'wire.ask' requests
    settings = load_settings(
        env={},
        overrides={"bus.url": wire.url, "bus.exchange": wire.exchange, "home": str(tmp_path)},
    )
    svc = Service(f"answerer-{unique}", site="eu", heartbeat_interval=1.0)
    received: list[tuple[Ask, str, str | None]] = []

    @svc.handler("wire.ask", body=Ask)
    async def answer(ctx: Context, ask: Ask) -> Answer:
        received.append((ask, ctx.envelope.kind, ctx.envelope.sender))
        return Answer(answer=ask.n * 7, seen_origin=ctx.envelope.headers.get("origin", ""))

    transport = open_transport(wire.url, exchange=wire.exchange)
    await transport.start()
    runner = ServiceRunner(svc, transport, settings)
    await runner.start()
    try:
        # When the foreign client (a separate Python process without stalwart)
        # publishes a request and waits for the reply on a topic of its own
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(wire.client), wire.url, wire.exchange, "wire.ask", "wire.reply.x"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        await runner.stop(grace=5.0)
        await transport.close()
    # Then the service decoded the foreign envelope, typed body and all ...
    assert result.returncode == 0, result.stderr
    exchange_log = json.loads(result.stdout)
    request, reply = exchange_log["request"], exchange_log["reply"]
    assert received == [(Ask(question="six times seven", n=6), "Ask", "wire-client@elsewhere/1")]
    # ... and the client decoded the service's reply by the documented format alone
    assert reply["v"] == 1 and reply["topic"] == "wire.reply.x"
    assert reply["kind"] == "Answer"
    assert reply["body"] == {"answer": 42, "seen_origin": wire.origin}
    assert reply["correlation_id"] == request["correlation_id"]
    assert reply["causation_id"] == request["id"]
    assert reply["sender"].startswith(f"answerer-{unique}@eu/")
    assert reply["created_at"].endswith("Z")


@pytest.mark.parametrize("client", [CLIENT, NATS_CLIENT], ids=["pika", "nats-py"])
def test_the_foreign_client_does_not_import_stalwart(client: Path) -> None:
    # Given the foreign client's source
    source = client.read_text()
    # Then it imports nothing of stalwart (it also asserts so at run time)
    assert "import stalwart" not in source and "from stalwart" not in source
