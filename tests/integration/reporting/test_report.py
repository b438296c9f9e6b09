"""``stalwart report``: reports reach the bus, or are spooled and forwarded later."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from stalwart.bus import QueueSpec, open_transport
from stalwart.messages import Report
from tcp_proxy import proxy_to


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
    await declare_pattern(url, name, "sys.report.#", **options)


async def declare_pattern(url: str, name: str, pattern: str, **options: object) -> None:
    transport = open_transport(url, **options)
    await transport.start()
    try:
        await transport.declare(QueueSpec(name=name, patterns=(pattern,)))
    finally:
        await transport.close()


async def ready(url: str, queue: str) -> int:
    transport = open_transport(url)
    await transport.start()
    try:
        return (await transport.queue_stats(queue)).ready
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
    (tmp_path / "stalwart.toml").write_text(f'[bus]\nexchange = "{exchange}"\n')
    async with proxy_to(rabbitmq_url) as proxy:
        url = proxy.url(rabbitmq_url)
        # Given the broker unreachable (its connections cut)
        proxy.cut()
        done = await asyncio.to_thread(
            stalwart,
            ["report", "--level", "warning", "--source", "scrub", "disk slow"],
            tmp_path,
            STALWART_BUS_URL=url,
        )
        # Then the report succeeds and says it was spooled
        assert done.returncode == 0, done.stderr
        assert "spooled to" in done.stdout and "stalwart outbox flush" in done.stdout
        # When the broker is back and the outbox is flushed, as the message advised
        proxy.restore()
        flushed = await asyncio.to_thread(
            stalwart, ["outbox", "flush"], tmp_path, STALWART_BUS_URL=url
        )
        assert flushed.returncode == 0, flushed.stderr
    # Then the report arrives: nothing was lost
    [report] = await drain(rabbitmq_url, "reports", 1, exchange=exchange)
    assert (report.level, report.text) == ("warning", "disk slow")


async def test_a_report_spooled_for_the_embedded_bus_is_flushed_as_advised(
    tmp_path: Path,
) -> None:
    # Given an embedded bus that cannot be opened (its directory is a file for now)
    blocker = tmp_path / "busdir"
    blocker.write_text("in the way")
    url = f"sqlite:///{blocker}/bus.db"
    done = stalwart(["report", "--source", "batch", "step done"], tmp_path, STALWART_BUS_URL=url)
    # Then the report is spooled, and the command names `stalwart outbox flush`
    assert done.returncode == 0, done.stderr
    assert "spooled to" in done.stdout and "`stalwart outbox flush`" in done.stdout
    # When the bus can be opened again and the advice is followed
    blocker.unlink()
    await declare(url, "reports")
    flushed = stalwart(["outbox", "flush", "--timeout", "20"], tmp_path, STALWART_BUS_URL=url)
    # Then flush forwards it to that bus
    assert flushed.returncode == 0, flushed.stderr
    assert "forwarded 1 message(s)" in flushed.stdout
    [report] = await drain(url, "reports", 1)
    assert report.text == "step done"


async def test_a_message_spooled_for_one_bus_is_not_forwarded_by_a_report_on_another(
    tmp_path: Path,
) -> None:
    # Given a message sent to a broker that does not exist (so it is spooled)
    sent = stalwart(
        ["send", "jobs.run", "--json", '{"n": 1}'],
        tmp_path,
        STALWART_BUS_URL="amqp://guest:guest@nohost.invalid:1/",
    )
    assert sent.returncode == 0, sent.stderr
    # When an unrelated report goes to the embedded bus, on the same outbox
    url = f"sqlite:///{tmp_path}/bus.db"
    await declare(url, "everything")
    await declare_pattern(url, "jobs", "jobs.#")
    done = stalwart(["report", "all well"], tmp_path, STALWART_BUS_URL=url)
    assert done.returncode == 0, done.stderr
    # Then only the report reached the embedded bus; the message waits for its own broker
    assert await ready(url, "jobs") == 0
    status = stalwart(["outbox", "status"], tmp_path, STALWART_BUS_URL=url)
    assert "nohost.invalid" in status.stdout and "guest:guest" not in status.stdout
