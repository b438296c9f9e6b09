"""Consumers on the shared RabbitMQ (which these tests never stop): a consumer killed
mid-message, and a poison message through the dead-letter queue and back.

Broker outages run on a private node: see test_rabbitmq_faults.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from amqp_support import private_exchange
from stalwart.bus import QueueSpec
from stalwart.bus.amqp import AmqpTransport
from stalwart.cli import build_app
from stalwart.config import load_settings
from stalwart.envelope import Envelope
from stalwart.service import Context, Service, ServiceRunner
from waiting import until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.chaos]

CONSUMER = Path(__file__).with_name("chaos_consumer.py")


@pytest.fixture
async def exchange(rabbitmq_url: str, unique: str) -> AsyncIterator[str]:
    async with private_exchange(rabbitmq_url, "chaos", unique) as name:
        yield name


async def test_a_consumer_killed_mid_message_hands_it_to_the_other(
    rabbitmq_url: str, exchange: str
) -> None:
    # Given a consumer process holding the only message, mid-handler
    bus = AmqpTransport(rabbitmq_url, exchange=exchange)
    await bus.start()
    try:
        await bus.declare(QueueSpec("kill", ("kill.x",), lease=600.0))
        env = Envelope.new("kill.x", "precious")
        await bus.publish([env])
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CONSUMER),
            rabbitmq_url,
            exchange,
            "kill",
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 60.0)
            assert line.decode().strip() == f"holding {env.id}"
            # When it is killed with SIGKILL before it acks
            child.send_signal(signal.SIGKILL)
            await asyncio.wait_for(child.wait(), 10.0)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
        # Then the other consumer gets the message, as a second attempt, long before the lease
        async with asyncio.timeout(30.0):
            async for delivery in bus.consume("kill", 1):
                assert delivery.envelope is not None and delivery.envelope.id == env.id
                assert delivery.attempt == 2
                await delivery.ack()
                break
    finally:
        await bus.close()


async def test_a_poison_message_is_dead_lettered_and_dlq_retry_brings_it_back(
    rabbitmq_url: str, exchange: str, tmp_path: Path, unique: str
) -> None:
    # Given a service whose handler raises until it is healed, allowing 3 attempts
    config = tmp_path / "stalwart.toml"
    config.write_text(
        f'home = "{tmp_path}"\n[bus]\nurl = "{rabbitmq_url}"\nexchange = "{exchange}"\n'
        f'outbox = "{tmp_path / "outbox.db"}"\nmax_attempts = 3\nretry_initial = 0.05\n'
        "retry_max = 0.1\n"
    )
    settings = load_settings(config, env={})
    name = f"poison-{unique}"
    svc = Service(name, heartbeat_interval=1.0)
    attempts: list[int] = []
    healed = asyncio.Event()
    done = asyncio.Event()

    @svc.handler("poison.x")
    async def handle(ctx: Context, body: Any) -> None:
        attempts.append(ctx.envelope.attempt)
        if not healed.is_set():
            raise RuntimeError("cannot digest this")
        done.set()

    transport = AmqpTransport(rabbitmq_url, exchange=exchange)
    await transport.start()
    runner = ServiceRunner(svc, transport, settings)
    await runner.start()
    try:
        await transport.publish([Envelope.new("poison.x", "bad")])

        # When every attempt fails
        # Then after the third it sits in the dead-letter queue with the handler's error
        await until(
            lambda: transport.queue_stats(name),
            30.0,
            "one dead letter",
            accept=lambda s: s.dead == 1,
        )
        assert attempts == [1, 2, 3]
        (letter,) = await transport.dead_letters(name)
        assert "cannot digest this" in letter.reason
        # And when it is healed and `stalwart dlq retry` runs, it is consumed
        healed.set()
        result = await asyncio.to_thread(
            CliRunner().invoke,
            build_app(["dlq"]),
            ["dlq", "retry", "--service", name, "-c", str(config)],
        )
        assert result.exit_code == 0, result.output
        await asyncio.wait_for(done.wait(), 30.0)
        assert attempts[-1] == 1 and (await transport.queue_stats(name)).dead == 0
    finally:
        await runner.stop(grace=5.0)
        await transport.close()
