"""``stalwart report``: reports reach the bus, or are spooled and forwarded later."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from stalwart.bus import QueueSpec, open_transport
from stalwart.messages import Report


def stalwart(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (cwd / "stalwart.toml").touch()
    return subprocess.run(
        [sys.executable, "-m", "stalwart", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        env={**os.environ, "STALWART_CONFIG": str(cwd / "stalwart.toml"), **env},
        timeout=60,
    )


async def drain(url: str, queue: str, want: int, **options: object) -> list[Report]:
    transport = open_transport(url, **options)
    await transport.start()
    got: list[Report] = []
    try:

        async def take() -> None:
            async for d in transport.consume(queue, 16):
                assert d.envelope is not None
                got.append(Report.model_validate(d.envelope.body))
                await d.ack()
                if len(got) >= want:
                    return

        await asyncio.wait_for(take(), 20)
    finally:
        await transport.close()
    return got


async def declare(url: str, name: str, **options: object) -> None:
    transport = open_transport(url, **options)
    await transport.start()
    try:
        await transport.declare(QueueSpec(name=name, patterns=("sys.report.#",)))
    finally:
        await transport.close()


async def test_report_reaches_the_embedded_bus(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bus.db"
    await declare(url, "reports")
    # When a batch tool reports an error with references
    done = stalwart(
        [
            "report",
            "--level",
            "error",
            "--source",
            "pipeline",
            "--ref",
            "ous=uid://A001/X1",
            "calibration diverged",
        ],
        tmp_path,
        STALWART_BUS_URL=url,
    )
    # Then the command says where it went, and the report is on sys.report.error
    assert done.returncode == 0, done.stderr
    assert "published on sys.report.error" in done.stdout
    [report] = await drain(url, "reports", 1)
    assert (report.level, report.source, report.text) == (
        "error",
        "pipeline",
        "calibration diverged",
    )
    assert report.refs == {"ous": "uid://A001/X1"}


def test_bad_reference_is_a_clear_error(tmp_path: Path) -> None:
    done = stalwart(
        ["report", "--ref", "no-equals-sign", "text"],
        tmp_path,
        STALWART_BUS_URL=f"sqlite:///{tmp_path}/bus.db",
    )
    assert done.returncode != 0
    assert "is not KEY=VALUE" in done.stderr


async def test_report_is_spooled_when_the_broker_is_away_and_forwarded_later(
    tmp_path: Path, rabbitmq_url: str, unique: str
) -> None:
    exchange = f"test-{unique}"
    await declare(rabbitmq_url, "reports", exchange=exchange)
    # Given a broker address where nothing listens
    dead = "amqp://guest:guest@127.0.0.1:1/"
    done = stalwart(
        ["report", "--level", "warning", "--source", "scrub", "disk slow"],
        tmp_path,
        STALWART_BUS_URL=dead,
    )
    # Then the report succeeds and says it was spooled
    assert done.returncode == 0, done.stderr
    assert "spooled to" in done.stdout
    # When the outbox is flushed towards a live broker
    (tmp_path / "stalwart.toml").write_text(f'[bus]\nexchange = "{exchange}"\n')
    flushed = stalwart(["outbox", "flush"], tmp_path, STALWART_BUS_URL=rabbitmq_url)
    assert flushed.returncode == 0, flushed.stderr
    # Then the report arrives: nothing was lost
    [report] = await drain(rabbitmq_url, "reports", 1, exchange=exchange)
    assert (report.level, report.text) == ("warning", "disk slow")
