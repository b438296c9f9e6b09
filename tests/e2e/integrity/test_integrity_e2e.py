"""The integrity commands as separate processes, as operators run them: a transfer
service for a site in its own process, requests over the embedded bus, the
replica checked with the command line afterwards."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stalwart.bus import QueueSpec, open_transport
from stalwart.envelope import Envelope
from stalwart.integrity.service import TransferReply, TransferRequest, transfer_topic

BLOCK = 64 * 1024


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def env(tmp_path: Path, home: Path) -> dict[str, str]:
    config = tmp_path / "stalwart.toml"
    config.write_text(
        f'home = "{home}"\n[integrity]\nblock_size = "64KiB"\ndata_blocks = 4\nparity_blocks = 2\n'
    )
    return {**os.environ, "STALWART_CONFIG": str(config)}


def _stalwart(env: dict[str, str], *args: str, code: int = 0) -> str:
    done = subprocess.run([_exe(), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout


def _exe() -> str:
    return str(Path(sys.executable).with_name("stalwart"))


@pytest.fixture
def service(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [_exe(), "integrity", "serve", "--site", "eu"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stdout is not None:  # read by the test that needs it; not left to leak
            proc.stdout.close()


async def _request(home: Path, request: TransferRequest, unique: str) -> TransferReply:
    transport = open_transport(f"sqlite:///{home}/bus.db")
    await transport.start()
    try:
        reply_topic = f"test.replies.r{unique}"
        spec = QueueSpec(name=f"replies-{unique}", patterns=(reply_topic,), ephemeral=True)
        await transport.declare(spec)
        await transport.publish([Envelope.new(transfer_topic("eu"), request, reply_to=reply_topic)])

        async def first() -> TransferReply:
            async for delivery in transport.consume(spec.name, 1):
                await delivery.ack()
                assert delivery.envelope is not None
                return TransferReply.model_validate(delivery.envelope.body)
            raise AssertionError("the bus closed before a reply came")

        return await asyncio.wait_for(first(), timeout=90)
    finally:
        await transport.close()


@pytest.mark.slow
def test_transfer_service_process_serves_and_stops_gracefully(
    env, home: Path, service, tmp_path: Path, unique: str
) -> None:
    # Given a file ingested at jao with the command line
    src = tmp_path / "jao" / "uid_A001.bin"
    src.parent.mkdir()
    data = os.urandom(BLOCK * 10 + 99)
    src.write_bytes(data)
    assert "ingested" in _stalwart(env, "integrity", "ingest", str(src), "--site", "jao")
    # When the eu transfer service process is asked over the bus to fetch it
    dst = tmp_path / "eu" / "uid_A001.bin"
    reply = asyncio.run(_request(home, TransferRequest(src=str(src), dst=str(dst)), unique))
    # Then it replies with a verified transfer, and the copy is whole
    assert reply.outcome == "transferred" and reply.site == "eu", reply
    assert dst.read_bytes() == data
    # And the command line sees the replica at eu and verifies it
    assert '"state": "ok"' in _stalwart(
        env, "integrity", "catalog", "replicas", "--site", "eu", "--json"
    )
    assert "ok" in _stalwart(env, "integrity", "verify", "--site", "eu")
    # And SIGTERM stops the service cleanly
    service.send_signal(signal.SIGTERM)
    assert service.wait(timeout=30) == 0, service.stdout.read() if service.stdout else ""


def _lines(proc: subprocess.Popen[bytes], count: int, timeout: float) -> list[str]:
    """The first ``count`` lines ``proc`` prints, or fewer once ``timeout`` passes."""
    assert proc.stdout is not None
    fd, seen = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while seen.count(b"\n") < count and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            seen += os.read(fd, 65536) or b""
    return seen.decode().splitlines()[:count]


@pytest.mark.slow
def test_scheduled_scrub_says_when_it_runs_next_and_stops_on_sigterm(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given a file ingested at jao
    src = tmp_path / "jao" / "f.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(BLOCK * 5))
    _stalwart(env, "integrity", "ingest", str(src), "--site", "jao")
    # When jao is scrubbed every hour
    proc = subprocess.Popen(
        [_exe(), "integrity", "scrub", "--site", "jao", "--every", "1h", "--spread", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lines = _lines(proc, 2, timeout=60)
        # Then it scrubs now, and says when the next run is
        assert "checked 1, ok 1" in lines[0], lines
        assert lines[1].startswith("next scrub at ") and "(in 60m)" in lines[1], lines
    finally:
        # And SIGTERM ends the wait at once, cleanly
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)  # waits, and closes its pipe
        assert proc.returncode == 0
