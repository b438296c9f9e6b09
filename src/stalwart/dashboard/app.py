"""The dashboard application: :func:`create_app` composes it in one place."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from stalwart.backoff import Backoff
from stalwart.bus import BusLink, Transport, open_bus
from stalwart.config import Settings
from stalwart.dashboard import api, pages, servicepage
from stalwart.dashboard.auth import Authenticator
from stalwart.dashboard.guard import RequestGuard, default_hosts
from stalwart.dashboard.http_status import http_error
from stalwart.dashboard.live import LiveHub
from stalwart.dashboard.metrics import DashboardMetrics
from stalwart.dashboard.middleware import SecurityMiddleware
from stalwart.dashboard.ratelimit import RateLimiter, RateLimitMiddleware, Rule
from stalwart.dashboard.settings import DashboardSettings
from stalwart.dashboard.source import DataSource
from stalwart.dashboard.state import DashboardState
from stalwart.dashboard.storesource import StoreSource
from stalwart.dashboard.web import LoginRequired, build_templates, render
from stalwart.errors import ConfigError, StalwartError
from stalwart.service import TokenAuthority

__all__ = ["create_app", "is_loopback"]

_log = logging.getLogger("stalwart.dashboard")
_STATIC = Path(__file__).with_name("static")


def is_loopback(bind: str) -> bool:
    """True when ``host:port`` listens on this machine only."""
    host = _bind_host(bind)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(
    settings: Settings,
    *,
    bind: str | None = None,
    config: DashboardSettings | None = None,
    source: DataSource | None = None,
    transport: Transport | None = None,
) -> FastAPI:
    """The dashboard for ``settings``.

    ``source`` and ``transport`` default to the store and the bus named in
    ``settings``, opened and closed with the app; when given, the caller
    owns them. Raises ConfigError when bound beyond loopback with no users.
    """
    cfg = config or settings.section("dashboard", DashboardSettings)
    bind = bind or cfg.bind
    login_for_reads = cfg.login_for_reads
    if login_for_reads is None:
        login_for_reads = not is_loopback(bind)
    if login_for_reads and not cfg.users:
        raise ConfigError(
            f"the dashboard on {bind} requires a login but [dashboard.users] is empty: add a "
            "user with `stalwart dashboard hash-password`, or bind to 127.0.0.1"
        )
    owned: list[object] = []
    if source is None:
        source = StoreSource(
            settings.store.url, cache_ttl=cfg.cache_ttl, forget_after=settings.store.forget_after
        )
        owned.append(source)
    link = BusLink(
        transport or open_bus(settings, outbox=False),  # the dashboard never publishes
        start=transport is None,
        backoff=Backoff(cfg.bus_retry_initial, cfg.bus_retry_max),
        name="dashboard-bus",
    )
    if transport is None:
        owned.append(link.transport)
    hub = LiveHub(
        link.transport,
        queue_size=cfg.live_queue,
        batch_interval=cfg.live_batch_interval,
        per_client=cfg.live_per_client,
    )
    metrics = DashboardMetrics(TokenAuthority(settings.security))
    hub.observers.append(metrics.events.observe)
    link.on_up(hub.start)
    state = DashboardState(
        settings=settings,
        config=cfg,
        auth=Authenticator(cfg.users, cfg.secret, cfg.session_ttl),
        source=source,
        hub=hub,
        link=link,
        metrics=metrics,
        login_for_reads=login_for_reads,
        owned=owned,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _open(state)
        try:
            yield
        finally:
            await _close(state)

    app = FastAPI(
        title="stalwart dashboard",
        version="1",
        description="What is running where and what is flowing: a read API over the "
        "message store and the bus, and dead-letter actions.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's docs page loads Swagger UI from a CDN: not here
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.dashboard = state
    app.state.templates = build_templates()
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(servicepage.router)
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    _handlers(app)
    rules = (
        Rule("/login", RateLimiter(cfg.login_rate_limit, cfg.login_burst), method="POST"),
        Rule("/api/", RateLimiter(cfg.rate_limit, cfg.rate_burst)),
    )
    app.add_middleware(RateLimitMiddleware, rules=rules)
    app.add_middleware(SecurityMiddleware, metrics=metrics, secure=False)
    hosts = default_hosts(_bind_host(bind)) | frozenset(cfg.allowed_hosts)
    app.add_middleware(RequestGuard, allowed_hosts=hosts)
    return app


def _bind_host(bind: str) -> str:
    return bind.rsplit(":", 1)[0].strip("[]") if ":" in bind else bind


async def _open(state: DashboardState) -> None:
    """Start what the app owns; a bus that cannot be reached is retried, never blocks."""
    await state.link.open()


async def _close(state: DashboardState) -> None:
    await state.link.close()
    await state.hub.close()
    for thing in reversed(state.owned):
        close = getattr(thing, "close", None)
        if close is not None:
            try:
                await close()
            except StalwartError as exc:
                _log.warning("closing %r failed: %s", thing, exc)


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?{urlencode({'next': exc.next_url})}", status_code=303)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/") or "text/html" not in request.headers.get(
            "accept", ""
        ):
            return JSONResponse(
                {"detail": exc.detail},
                status_code=exc.status_code,
                headers=getattr(exc, "headers", None),
            )
        return render(request, "error.html", status=exc.status_code, detail=exc.detail)

    @app.exception_handler(StalwartError)
    async def _stalwart(request: Request, exc: StalwartError) -> Response:
        _log.warning("request %s failed: %s", request.url.path, exc)
        return await _http(request, http_error(exc))
