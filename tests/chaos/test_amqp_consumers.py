"""Resilience on a real RabbitMQ: a broker outage under load, a consumer killed
mid-message, and a poison message through the dead-letter queue and back.

The outage test stops the broker's application (``rabbitmqctl stop_app``)
and always starts it again, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from typer.testing import CliRunner

from amqp_support import private_exchange, until
from stalwart.bus import QueueSpec
from stalwart.bus.amqp import AmqpTransport
from stalwart.bus.outbox import OutboxTransport
from stalwart.cli import build_app
from stalwart.config import load_settings
from stalwart.envelope import Envelope
from stalwart.service import Context, Service, ServiceRunner

pytestmark = [pytest.mark.rabbitmq, pytest.mark.chaos]

CONSUMER = Path(__file__).with_name("chaos_consumer.py")
TOTAL = 10_000


@pytest.fixture
async def exchange(rabbitmq_url: str, unique: str) -> AsyncIterator[str]:
    async with private_exchange(rabbitmq_url, "chaos", unique) as name:
        yield name


async def _rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 120.0)
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {err.decode()}")


async def _broker_answers(url: str) -> bool:
    try:
        conn = await aio_pika.connect(url, timeout=2.0)
    except Exception:
        return False
    await conn.close()
    return True


@contextlib.asynccontextmanager
async def _outage_control(url: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Yields ``stop()``; the broker is started again on exit, whatever happened."""
    stopped = False

    async def stop() -> None:
        nonlocal stopped
        stopped = True
        await _rabbitmqctl("stop_app")

    try:
        yield stop
    finally:
        if stopped:
            await _rabbitmqctl("start_app")
            if not await until(lambda: _broker_answers(url), 120.0):
                raise RuntimeError("RabbitMQ did not come back after start_app")


class _IdempotentSink:
    """A consumer's effects, applied once per message id (its processed-ids record)."""

    def __init__(self) -> None:
        self.processed: set[str] = set()
        self.effects: list[str] = []
        self.deliveries = 0

    def apply(self, message_id: str) -> None:
        self.deliveries += 1
        if message_id in self.processed:
            return
        self.processed.add(message_id)
        self.effects.append(message_id)


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_a_broker_outage_under_load_loses_nothing_and_duplicates_no_effect(
    rabbitmq_url: str, exchange: str, tmp_path: Path
) -> None:
    # Given a service queue with two consumers and two producers behind outboxes
    admin = AmqpTransport(rabbitmq_url, exchange=exchange)
    await admin.start()
    await admin.declare(QueueSpec("sink", ("load.#",)))
    await admin.close()
    sink = _IdempotentSink()
    sent: list[str] = []
    half_sent = asyncio.Event()

    async def consumer() -> None:
        bus = AmqpTransport(rabbitmq_url, exchange=exchange, confirm_timeout=2.0)
        await bus.start()
        try:
            async for delivery in bus.consume("sink", 200):
                assert delivery.envelope is not None
                sink.apply(delivery.envelope.id)
                await delivery.ack()
        finally:
            await bus.close()

    async def producer(index: int) -> None:
        inner = AmqpTransport(rabbitmq_url, exchange=exchange, confirm_timeout=5.0)
        outbox = OutboxTransport(
            inner,
            tmp_path / f"outbox-{index}.db",
            publish_timeout=2.0,
            backoff_initial=0.1,
            backoff_cap=1.0,
            poll=0.5,
        )
        await outbox.start()
        try:
            for start in range(0, TOTAL // 2, 100):
                batch = [
                    Envelope.new("load.item", {"p": index, "n": start + n}) for n in range(100)
                ]
                await outbox.publish(batch)
                sent.extend(e.id for e in batch)
                if len(sent) >= TOTAL // 3:
                    half_sent.set()
            await outbox.wait_drained(timeout=120.0)
        finally:
            await outbox.close()

    consumers = [asyncio.create_task(consumer()) for _ in range(2)]
    producers: list[asyncio.Task[None]] = []
    try:
        async with _outage_control(rabbitmq_url) as stop:
            producers.extend(asyncio.create_task(producer(i)) for i in range(2))
            # When the broker stops while they are sending, and starts again
            await asyncio.wait_for(half_sent.wait(), 60.0)
            await stop()
        await asyncio.wait_for(asyncio.gather(*producers), 180.0)
        # Then every message is consumed, and no effect is applied twice
        assert await until(lambda: len(sink.processed) >= TOTAL, 120.0), len(sink.processed)
    finally:
        for task in consumers + producers:
            task.cancel()
        await asyncio.gather(*consumers, *producers, return_exceptions=True)
    assert len(sent) == TOTAL
    assert sink.processed == set(sent)
    assert len(sink.effects) == len(set(sink.effects)) == TOTAL
    assert sink.deliveries >= TOTAL  # duplicates only as at-least-once allows


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

        async def dead() -> bool:
            return (await transport.queue_stats(name)).dead == 1

        # When every attempt fails
        # Then after the third it sits in the dead-letter queue with the handler's error
        assert await until(dead, 30.0)
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


def test_the_broker_port_is_open_after_the_chaos_tests(rabbitmq_url: str) -> None:
    # Given the chaos tests above have run (whatever their outcome)
    # Then RabbitMQ is listening again for everyone else
    with socket.create_connection(("127.0.0.1", 5672), timeout=5.0):
        pass
