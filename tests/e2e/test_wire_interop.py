"""Wire interoperability: a plain pika client in its own process, knowing only
docs/wire-format.md, talks to a stalwart service over RabbitMQ both ways."""

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
from stalwart.bus.amqp import AmqpTransport
from stalwart.config import load_settings
from stalwart.service import Context, Service, ServiceRunner

pytestmark = pytest.mark.rabbitmq

CLIENT = Path(__file__).with_name("wire_client.py")


class Ask(BaseModel):
    question: str
    n: int


class Answer(BaseModel):
    answer: int
    seen_origin: str


@pytest.fixture
async def exchange(rabbitmq_url: str, unique: str) -> AsyncIterator[str]:
    async with private_exchange(rabbitmq_url, "wire", unique, extra=("wire-client",)) as name:
        yield name


async def test_a_foreign_pika_client_and_a_service_understand_each_other(
    rabbitmq_url: str, exchange: str, unique: str, tmp_path: Path
) -> None:
    # Given a stalwart service on RabbitMQ answering 'wire.ask' requests
    settings = load_settings(
        env={},
        overrides={"bus.url": rabbitmq_url, "bus.exchange": exchange, "home": str(tmp_path)},
    )
    svc = Service(f"answerer-{unique}", site="eu", heartbeat_interval=1.0)
    received: list[tuple[Ask, str, str | None]] = []

    @svc.handler("wire.ask", body=Ask)
    async def answer(ctx: Context, ask: Ask) -> Answer:
        received.append((ask, ctx.envelope.kind, ctx.envelope.sender))
        return Answer(answer=ask.n * 7, seen_origin=ctx.envelope.headers.get("origin", ""))

    transport = AmqpTransport(rabbitmq_url, exchange=exchange)
    await transport.start()
    runner = ServiceRunner(svc, transport, settings)
    await runner.start()
    try:
        # When the foreign client (a separate Python process without stalwart)
        # publishes a request and waits for the reply on a topic of its own
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(CLIENT), rabbitmq_url, exchange, "wire.ask", "wire.reply.x"],
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
    assert reply["body"] == {"answer": 42, "seen_origin": "pika"}
    assert reply["correlation_id"] == request["correlation_id"]
    assert reply["causation_id"] == request["id"]
    assert reply["sender"].startswith(f"answerer-{unique}@eu/")
    assert reply["created_at"].endswith("Z")


def test_the_foreign_client_does_not_import_stalwart() -> None:
    # Given the foreign client's source
    source = CLIENT.read_text()
    # Then it imports nothing of stalwart (it also asserts so at run time)
    assert "import stalwart" not in source and "from stalwart" not in source
