"""Health probes of critical services: one real protocol exchange each.

``amqp``: TCP connect and the AMQP 0-9-1 protocol header, answered by a
Connection.Start frame (a broker whose app is stopped refuses or closes).
``database``: ``SELECT 1`` on the URL. ``http``: GET, the status must match.
``command``: run it; exit status 0 is healthy. Every probe has a timeout and
never raises: it returns a :class:`ProbeResult` saying why it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import ssl
import struct
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.pool import NullPool

from stalwart.errors import StalwartError
from stalwart.ha.config import MonitorKind
from stalwart.store.engine import make_engine

__all__ = ["ProbeResult", "probe"]

_AMQP_HEADER: Final = b"AMQP\x00\x00\x09\x01"
_FRAME_METHOD: Final = 1
_CONNECTION_START: Final = (10, 10)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Outcome of one probe: ``ok``, why, and how long it took."""

    ok: bool
    detail: str
    seconds: float


async def probe(
    kind: MonitorKind, url: str, *, timeout: float, expect_status: int = 200
) -> ProbeResult:
    """Probe ``url`` as a ``kind`` service within ``timeout`` seconds."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            if kind == "amqp":
                detail = await _amqp(url)
            elif kind == "database":
                detail = await _database(url)
            elif kind == "http":
                detail = await asyncio.to_thread(_http, url, timeout, expect_status)
            else:
                detail = await _command(url)
        ok = True
    except TimeoutError:
        ok, detail = False, f"no answer within {timeout}s"
    except (OSError, StalwartError, ValueError) as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return ProbeResult(ok, detail, time.monotonic() - started)


async def _amqp(url: str) -> str:
    parts = urlsplit(url)
    tls = parts.scheme == "amqps"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (5671 if tls else 5672)
    reader, writer = await asyncio.open_connection(
        host, port, ssl=ssl.create_default_context() if tls else None
    )
    try:
        writer.write(_AMQP_HEADER)
        await writer.drain()
        header = await reader.readexactly(7)
        if header.startswith(b"AMQP"):
            raise ValueError(f"broker refused protocol 0-9-1 and offered {header!r}")
        frame_type, _channel, size = struct.unpack(">BHI", header)
        payload = await reader.readexactly(min(size, 4))
        method = struct.unpack(">HH", payload) if len(payload) == 4 else None
        if frame_type != _FRAME_METHOD or method != _CONNECTION_START:
            raise ValueError(f"unexpected AMQP frame type={frame_type} method={method}")
        return f"AMQP Connection.Start from {host}:{port}"
    except asyncio.IncompleteReadError as exc:
        raise ConnectionError(f"broker at {host}:{port} closed the handshake") from exc
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _database(url: str) -> str:
    engine = make_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "unhealthy", with its text
        raise ConnectionError(str(exc).splitlines()[0]) from exc
    finally:
        await engine.dispose()
    return "SELECT 1 answered"


def _http(url: str, timeout: float, expect_status: int) -> str:
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"http monitor URL {url!r} must start with http:// or https://")
    request = urllib.request.Request(url, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    if status != expect_status:
        raise ValueError(f"GET {url} answered {status}, expected {expect_status}")
    return f"GET answered {status}"


async def _command(line: str) -> str:
    argv = shlex.split(line)
    if not argv:
        raise ValueError("empty command for a command monitor")
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _out, err = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise ValueError(f"{argv[0]} exited {proc.returncode} {last[0]}".strip())
    return f"{argv[0]} exited 0"
