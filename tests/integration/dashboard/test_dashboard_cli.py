"""``stalwart dashboard`` and ``stalwart dashboard hash-password`` as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
from dashboard_system import free_port

from stalwart.dashboard.auth import verify_password
from stalwart.errors import EX_CONFIG
from waiting import until

pytestmark = pytest.mark.slow
STALWART = str(Path(sys.executable).with_name("stalwart"))


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "STALWART_HOME": str(home), "STALWART_CONFIG": ""}


async def _dashboard(home: Path, *args: str) -> asyncio.subprocess.Process:
    """``stalwart dashboard ARGS`` on the embedded defaults under ``home``, output piped."""
    return await asyncio.create_subprocess_exec(
        STALWART,
        "dashboard",
        *args,
        env=_env(home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_the_command_serves_until_sigterm_then_exits_cleanly(tmp_path: Path) -> None:
    # Given `stalwart dashboard` started on a free port with embedded defaults
    port = free_port()
    proc = await _dashboard(tmp_path, "--bind", f"127.0.0.1:{port}")
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
    proc = await _dashboard(tmp_path, "--bind", "nonsense")
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == EX_CONFIG
    assert "use host:port" in err.decode() and "Traceback" not in err.decode()


async def test_a_port_in_use_is_a_configuration_error_on_one_line(tmp_path: Path) -> None:
    # Given another program listening on the port
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        # When the dashboard is asked to listen there
        proc = await _dashboard(tmp_path, "--bind", f"127.0.0.1:{port}")
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    # Then it exits 78 (do not restart) with one error line naming the fix, no traceback
    errors = [line for line in err.decode().splitlines() if "error" in line.lower()]
    assert proc.returncode == EX_CONFIG
    assert "Traceback" not in err.decode() and "never retrieved" not in err.decode()
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0]
    assert "choose another --bind or set [dashboard] bind" in errors[0]
    assert "dashboard on" not in out.decode()


async def test_port_zero_prints_the_port_actually_bound(tmp_path: Path) -> None:
    # Given the dashboard asked for any free port, writing its address to a file
    url_file = tmp_path / "dashboard.url"
    proc = await _dashboard(tmp_path, "--bind", "127.0.0.1:0", "--url-file", str(url_file))
    try:
        await until(lambda: asyncio.to_thread(url_file.exists), 30, "the dashboard's URL")
        url = url_file.read_text().strip()
        # Then the URL names the real port, and the dashboard answers there
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        async with httpx.AsyncClient() as client:
            assert (await client.get(url + "api/overview")).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert url in out.decode()


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
