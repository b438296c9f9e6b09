"""What pages and API routes share: templates, the current user, access rules, CSRF."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from stalwart.dashboard import charts, humanize
from stalwart.dashboard.auth import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    Session,
    session_binding,
)
from stalwart.dashboard.panels import PANELS
from stalwart.dashboard.state import DashboardState
from stalwart.envelope import utcnow

__all__ = [
    "LoginRequired",
    "build_templates",
    "csrf_binding",
    "csrf_cookie",
    "current_user",
    "dash",
    "render",
    "require_action",
    "require_read",
]

NAV = (
    ("/", "Overview"),
    ("/map", "System map"),
    ("/messages", "Messages"),
    ("/reports", "Reports"),
    ("/dead-letters", "Dead letters"),
    *((f"/{p.slug}", p.title) for p in PANELS.values()),
)


class LoginRequired(Exception):
    """Raised by page routes to send the browser to the login form."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def dash(request: Request) -> DashboardState:
    state: DashboardState = request.app.state.dashboard
    return state


def csrf_cookie(request: Request) -> str:
    """This browser's CSRF cookie (set by the middleware on its first visit)."""
    value: str = request.scope.get("state", {}).get("csrf_cookie") or request.cookies.get(
        CSRF_COOKIE, ""
    )
    return value


def current_user(request: Request) -> Session | None:
    return dash(request).auth.session(request.cookies.get(SESSION_COOKIE))


def csrf_binding(request: Request) -> str:
    """What this request's CSRF token is bound to: the session once logged in,
    else (for the login form only) the browser's CSRF cookie."""
    user = current_user(request)
    return session_binding(user) if user is not None else csrf_cookie(request)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def require_read(request: Request) -> Session | None:
    """Reads are open on loopback; elsewhere they need a login."""
    user = current_user(request)
    if dash(request).login_for_reads and user is None:
        if _is_api(request) or request.url.path in ("/live", "/metrics"):
            raise HTTPException(401, "log in at /login first: this dashboard requires it")
        raise LoginRequired(
            request.url.path + (f"?{request.url.query}" if request.url.query else "")
        )
    return user


def require_action(request: Request, token: str | None) -> Session:
    """Actions need a logged-in user and a valid CSRF token, always."""
    state = dash(request)
    if not state.auth.has_users:
        raise HTTPException(
            403,
            "actions need a login, and no users are configured: add one to [dashboard.users] "
            "with `stalwart dashboard hash-password`",
        )
    user = current_user(request)
    if user is None:
        if _is_api(request):
            raise HTTPException(401, "log in at /login first to retry or purge")
        raise LoginRequired("/dead-letters")
    token = token or request.headers.get(CSRF_HEADER)
    if not state.auth.csrf_ok(session_binding(user), token):
        raise HTTPException(403, "missing or invalid CSRF token: reload the page and try again")
    return user


def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = (utcnow() - value).total_seconds()
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def build_templates() -> Environment:
    """The Jinja2 environment: autoescape on for every template, helpers as globals."""
    env = Environment(
        loader=PackageLoader("stalwart.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        nav=NAV,
        charts=charts,
        cell=humanize.cell,
        header=humanize.header,
        ago=_ago,
        pretty=_pretty,
        urlencode=urlencode,
        quote=lambda s: quote(str(s), safe=""),
    )
    env.filters["time"] = lambda d: d.strftime("%Y-%m-%d %H:%M:%S") if d else ""
    env.filters["ms"] = lambda d: d.strftime("%H:%M:%S.%f")[:-3] if d else ""
    env.filters["num"] = lambda n: f"{n:,.0f}" if n is not None else ""
    env.filters["rate"] = lambda r: f"{r:.3g}" if r else "0"
    return env


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template``; ``?fragment=1`` renders just its content (for live refresh)."""
    state = dash(request)
    env: Environment = request.app.state.templates
    user = current_user(request)
    html = env.get_template(template).render(
        request=request,
        path=request.url.path,
        user=user,
        login_enabled=state.auth.has_users,
        csrf_token=state.auth.csrf_token(csrf_binding(request)),
        fragment=request.query_params.get("fragment") == "1",
        **context,
    )
    return HTMLResponse(Markup(html), status_code=status)
