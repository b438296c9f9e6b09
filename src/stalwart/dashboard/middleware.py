"""Security headers, the CSRF cookie, and request timing, as one pure ASGI middleware.

Every response but static files is ``Cache-Control: no-store``: pages and API
answers carry message bodies, which must not linger in a shared cache or the
browser's history after logout.
"""

from __future__ import annotations

import time
from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stalwart.dashboard.auth import CSRF_COOKIE, Authenticator
from stalwart.dashboard.metrics import DashboardMetrics

__all__ = ["SecurityMiddleware"]

_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is the client's problem
                return None
            if name in jar:
                return jar[name].value
    return None


class SecurityMiddleware:
    """Adds security headers, gives each browser a CSRF cookie, times requests."""

    def __init__(self, app: ASGIApp, metrics: DashboardMetrics, secure: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fresh: str | None = None
        if _cookie(scope, CSRF_COOKIE) is None:
            fresh = Authenticator.new_csrf_cookie()
            scope.setdefault("state", {})["csrf_cookie"] = fresh
        started = time.perf_counter()

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_HEADERS)
                if not scope["path"].startswith("/static/") and not any(
                    k.lower() == b"cache-control" for k, _ in headers
                ):
                    headers.append((b"cache-control", b"no-store"))
                if fresh is not None:
                    flags = "; Secure" if self.secure else ""
                    cookie = f"{CSRF_COOKIE}={fresh}; Path=/; HttpOnly; SameSite=Strict{flags}"
                    headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
                route = scope.get("route")
                name = getattr(route, "path", "other")
                if name != "/live":
                    self.metrics.requests.labels(route=name).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, send_wrapped)
