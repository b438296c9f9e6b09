"""A TCP proxy a test can cut and restore: a database or broker outage on demand.

Tests point a client at the proxy instead of the service; ``cut()`` simulates a
network partition or a service that went away (open connections drop, new ones
are closed at once until ``restore()``), without touching the service that
other tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

__all__ = ["TcpProxy", "proxy_to"]


@contextlib.asynccontextmanager
async def proxy_to(url: str, default_port: int = 5672) -> AsyncIterator[TcpProxy]:
    """A started TcpProxy in front of the service of ``url``."""
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or default_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``cut()`` / ``restore()``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.cut_now = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, base: str) -> str:
        """``base`` (a URL of the real service) rewritten to go through the proxy."""
        host_port = f"{self._target[0]}:{self._target[1]}"
        return base.replace(host_port, f"127.0.0.1:{self.port}")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_now:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self._target), 5.0
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            dst.close()
            self._writers.discard(dst)

    def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        self.cut_now = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.cut_now = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
