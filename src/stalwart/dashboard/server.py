"""Serving the dashboard with uvicorn inside an existing event loop.

``stalwart dashboard`` and ``stalwart up`` both call :func:`serve_dashboard`;
the caller owns signals and says when to stop by setting ``stop_event``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Generator

import uvicorn

from stalwart.config import Settings
from stalwart.dashboard.app import create_app
from stalwart.dashboard.settings import DashboardSettings
from stalwart.errors import ConfigError

__all__ = ["parse_bind", "serve_dashboard"]

_log = logging.getLogger("stalwart.dashboard")


def parse_bind(bind: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8321`` for IPv6) -> (host, port); raises ConfigError."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"bad dashboard bind {bind!r}: use host:port, e.g. 127.0.0.1:8321")
    return host.strip("[]"), int(port)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_dashboard(
    settings: Settings,
    bind: str | None = None,
    stop_event: asyncio.Event | None = None,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until ``stop_event`` is set (or forever), then stop gracefully.

    ``bind`` defaults to ``[dashboard] bind`` (127.0.0.1:8321). ``on_ready``
    is called with the URL once the server listens. Raises ConfigError for a
    bad bind or a non-loopback bind without users, and OSError when the port
    is taken.
    """
    cfg = settings.section("dashboard", DashboardSettings)
    bind = bind or cfg.bind
    host, port = parse_bind(bind)
    app = create_app(settings, bind=bind, config=cfg)
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )
    stop = stop_event or asyncio.Event()
    serving = asyncio.create_task(server.serve(), name="dashboard-server")
    waiting = asyncio.create_task(stop.wait(), name="dashboard-stop")
    try:
        while not server.started:
            if serving.done():
                break
            await asyncio.wait({serving}, timeout=0.05)
        if server.started:
            url = f"http://{bind}/"
            _log.info("dashboard listening on %s", url)
            if on_ready is not None:
                on_ready(url)
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # End live streams first: uvicorn waits for open connections before
        # it runs the app's shutdown, so SSE viewers would hold it up.
        app.state.dashboard.hub.end_streams()
        server.should_exit = True
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        try:
            await asyncio.wait_for(serving, timeout=15)
        except TimeoutError:
            server.force_exit = True
            await serving
    if server.started is False and serving.done() and serving.exception() is None:
        raise OSError(f"the dashboard could not listen on {bind}: is the port already in use?")
