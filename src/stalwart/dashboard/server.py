"""Serving the dashboard with uvicorn inside an existing event loop.

``stalwart dashboard`` and ``stalwart up`` both call :func:`serve_dashboard`;
the caller owns signals and says when to stop by setting ``stop_event``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator

import uvicorn

from stalwart.config import Settings
from stalwart.dashboard.app import create_app
from stalwart.dashboard.settings import DashboardSettings
from stalwart.errors import ConfigError, StalwartError

__all__ = ["parse_bind", "serve_dashboard"]

_log = logging.getLogger("stalwart.dashboard")


def parse_bind(bind: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8321`` for IPv6) -> (host, port); raises ConfigError."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"bad dashboard bind {bind!r}: use host:port, e.g. 127.0.0.1:8321")
    return host.strip("[]"), int(port)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts: a taken port is a ConfigError
    here, not uvicorn's ``sys.exit(3)`` inside the event loop."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigError(
            f"the dashboard cannot listen on {host}:{port}: {exc.strerror or exc}; another "
            "program holds the port or the address is not this host's: choose another "
            "--bind or set [dashboard] bind"
        ) from None


def _url(sock: socket.socket) -> str:
    """The address actually bound (port 0 becomes the port the system chose)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


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

    ``bind`` defaults to ``[dashboard] bind`` (127.0.0.1:8321; port 0 picks a
    free one). ``on_ready`` is called with the URL actually bound once the
    server listens. Raises ConfigError for a bad bind, a non-loopback bind
    without users, or an address that cannot be bound (port taken), and
    StalwartError when the application fails to start.
    """
    cfg = settings.section("dashboard", DashboardSettings)
    bind = bind or cfg.bind
    host, port = parse_bind(bind)
    app = create_app(settings, bind=bind, config=cfg)
    sock = _listen(host, port)
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
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="dashboard-server")
    waiting = asyncio.create_task(stop.wait(), name="dashboard-stop")
    try:
        while not server.started:
            if serving.done():
                break
            await asyncio.wait({serving}, timeout=0.05)
        if server.started:
            url = _url(sock)
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
        except SystemExit:  # uvicorn's way of saying the application did not start
            pass
        finally:
            sock.close()
    if not server.started and not stop.is_set():
        raise StalwartError(f"the dashboard did not start on {bind}: see the log above for why")
