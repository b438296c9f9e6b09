"""``stalwart dashboard`` and ``stalwart dashboard hash-password`` as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from dashboard_system import free_port

from dashboard_waits import until
from stalwart.dashboard.auth import verify_password

pytestmark = pytest.mark.slow
STALWART = str(Path(sys.executable).with_name("stalwart"))


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "STALWART_HOME": str(home), "STALWART_CONFIG": ""}


async def test_the_command_serves_until_sigterm_then_exits_cleanly(tmp_path: Path) -> None:
    # Given `stalwart dashboard` started on a free port with embedded defaults
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        STALWART,
        "dashboard",
        "--bind",
        f"127.0.0.1:{port}",
        env=_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def answers() -> httpx.Response | None:
                try:
                    return await client.get("/api/overview")
                except httpx.TransportError:
                    return None

            # When it is asked, Then it answers from the (empty) store and bus
            response = await until(answers, 30, "the dashboard to listen")
            assert response.status_code == 200 and response.json()["sites"] == []
        # When it gets SIGTERM, Then it stops gracefully with status 0
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0
        assert f"127.0.0.1:{port}" in out.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_bad_bind_fails_on_one_line_with_a_fix(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        STALWART,
        "dashboard",
        "--bind",
        "nonsense",
        env=_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "use host:port" in err.decode() and "Traceback" not in err.decode()


async def test_hash_password_prints_a_hash_that_verifies(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        STALWART,
        "dashboard",
        "hash-password",
        "--user",
        "ops",
        "--stdin",
        env=_env(tmp_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(b"s3cret pass\n"), 30)
    assert proc.returncode == 0
    line = next(x for x in out.decode().splitlines() if x.startswith("ops = "))
    encoded = line.split('"')[1]
    assert verify_password("s3cret pass", encoded) and "s3cret" not in out.decode()
