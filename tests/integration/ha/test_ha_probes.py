"""Probes against real endpoints: a local HTTP server, SQLite, closed ports, commands."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stalwart.ha.probes import probe


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ok" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def http_base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_http_status_must_match(http_base: str) -> None:
    assert (await probe("http", f"{http_base}/ok", timeout=5)).ok
    down = await probe("http", f"{http_base}/down", timeout=5)
    assert not down.ok
    assert "503" in down.detail
    assert (await probe("http", f"{http_base}/down", timeout=5, expect_status=503)).ok


async def test_http_bad_scheme_is_explained() -> None:
    result = await probe("http", "ftp://example/", timeout=1)
    assert not result.ok
    assert "must start with http://" in result.detail


async def test_database_probe_runs_a_query(tmp_path: Path) -> None:
    assert (await probe("database", f"sqlite:///{tmp_path}/x.db", timeout=5)).ok
    gone = await probe("database", f"postgresql://postgres@127.0.0.1:{_closed_port()}/x", timeout=5)
    assert not gone.ok


async def test_amqp_probe_on_a_closed_port_fails() -> None:
    result = await probe("amqp", f"amqp://guest:guest@127.0.0.1:{_closed_port()}/", timeout=2)
    assert not result.ok
    assert "Error" in result.detail


async def test_amqp_probe_on_a_non_amqp_server_fails(http_base: str) -> None:
    # Given an HTTP server where a broker was expected
    port = http_base.rsplit(":", 1)[1]
    result = await probe("amqp", f"amqp://127.0.0.1:{port}/", timeout=0.5)
    # Then the AMQP handshake is not mistaken for a healthy broker
    assert not result.ok


async def test_command_exit_status_decides(tmp_path: Path) -> None:
    assert (await probe("command", "true", timeout=5)).ok
    failed = await probe("command", "sh -c 'echo broken >&2; exit 3'", timeout=5)
    assert not failed.ok
    assert "exited 3 broken" in failed.detail
    slow = await probe("command", "sleep 5", timeout=0.2)
    assert not slow.ok
    assert "no answer within 0.2s" in slow.detail
    assert not (await probe("command", "", timeout=1)).ok
