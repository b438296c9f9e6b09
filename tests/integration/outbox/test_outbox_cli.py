"""``stalwart outbox status|flush`` as a user runs them (the real Typer app)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stalwart.bus import QueueSpec
from stalwart.bus.amqp import AmqpTransport
from stalwart.bus.outbox import destination
from stalwart.bus.outbox._spool import Spool
from stalwart.cli import build_app
from stalwart.envelope import Envelope, encode

pytestmark = pytest.mark.rabbitmq


def _config(tmp_path: Path, url: str, exchange: str) -> str:
    path = tmp_path / "stalwart.toml"
    path.write_text(
        f'[bus]\nurl = "{url}"\nexchange = "{exchange}"\noutbox = "{tmp_path / "outbox.db"}"\n'
    )
    return str(path)


def _spool(tmp_path: Path, url: str, count: int) -> None:
    """``count`` messages in the spool for the bus at ``url``, as an outbox leaves
    them when it cannot reach that broker."""
    spool = Spool(tmp_path / "outbox.db", bus=destination(url))
    try:
        envelopes = [Envelope.new("cli.x", n) for n in range(count)]
        spool.append([(e.id, e.topic, encode(e)) for e in envelopes])
    finally:
        spool.close()


def _ready(url: str, exchange: str, declare: bool) -> int:
    async def ready() -> int:
        bus = AmqpTransport(url, exchange=exchange)
        await bus.start()
        try:
            if declare:
                await bus.declare(QueueSpec("cli", ("cli.#",)))
            return (await bus.queue_stats("cli")).ready
        finally:
            await bus.close()

    return asyncio.run(ready())


def test_status_then_flush_forwards_the_spool(
    rabbitmq_url: str, exchange: str, tmp_path: Path
) -> None:
    # Given three messages spooled while the broker was unreachable, and a declared service
    _spool(tmp_path, rabbitmq_url, 3)
    _ready(rabbitmq_url, exchange, declare=True)
    config = _config(tmp_path, rabbitmq_url, exchange)
    cli = CliRunner()
    app = build_app(["outbox"])
    # When the operator looks at the outbox and flushes it
    status = cli.invoke(app, ["outbox", "status", "-c", config])
    flushed = cli.invoke(app, ["outbox", "flush", "-c", config, "--timeout", "20"])
    after = cli.invoke(app, ["outbox", "status", "-c", config])
    # Then status showed 3 pending, flush forwarded them, and the service has them
    assert status.exit_code == 0, status.output
    assert "│ 3 " in status.output
    assert flushed.exit_code == 0, flushed.output
    assert "forwarded 3 message(s)" in flushed.output
    assert "│ 0 " in after.output
    assert _ready(rabbitmq_url, exchange, declare=False) == 3


def test_flush_with_the_broker_down_fails_on_one_line_and_keeps_the_spool(
    exchange: str, tmp_path: Path
) -> None:
    # Given a spooled message and a broker that is not there
    down = "amqp://guest:s3cret@127.0.0.1:1/"
    _spool(tmp_path, down, 1)
    config = _config(tmp_path, down, exchange)
    cli = CliRunner()
    app = build_app(["outbox"])
    # When flush runs with a short timeout
    result = cli.invoke(app, ["outbox", "flush", "-c", config, "--timeout", "1"])
    # Then it exits non-zero with an actionable error, no password, and nothing lost
    assert result.exit_code == 1
    assert "still spooled" in result.output and "s3cret" not in result.output
    assert "│ 1 " in cli.invoke(app, ["outbox", "status", "-c", config]).output


def test_flush_sets_a_damaged_row_aside_and_status_says_where(
    rabbitmq_url: str, exchange: str, tmp_path: Path
) -> None:
    # Given two spooled messages, one of them damaged on disk
    _spool(tmp_path, rabbitmq_url, 2)
    _ready(rabbitmq_url, exchange, declare=True)
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        db.execute("UPDATE outbox SET data = ? WHERE seq = 1", (b"{broken",))
    config = _config(tmp_path, rabbitmq_url, exchange)
    cli = CliRunner()
    app = build_app(["outbox"])
    # When the operator flushes the outbox and looks at it
    flushed = cli.invoke(app, ["outbox", "flush", "-c", config, "--timeout", "20"])
    status = cli.invoke(app, ["outbox", "status", "-c", config])
    # Then the good one was forwarded and the damaged one is reported, not lost
    assert flushed.exit_code == 0, flushed.output
    assert _ready(rabbitmq_url, exchange, declare=False) == 1
    assert status.exit_code == 0, status.output
    assert "1 spooled message(s) could not be decoded" in status.output
    assert "quarantine table" in status.output
