"""Every route of the dashboard, the requests that time it, and its peer.

A :class:`Probe` is one request to one route (a route may have several, e.g.
each message filter), with the statuses it must answer (a benchmark that times
a 404 or a 503 measures nothing) and its peer: the store's own query for the
same data, so that the difference is what the dashboard adds. Routes that read
no store (the bus, static files, the login form) have no peer.

:func:`uncovered` compares the plan with the application's own routes: a
route added to the dashboard without a probe here stops the benchmark with its
name, so that no route goes unmeasured.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from stalwart.bus import QueueSpec, Transport
from stalwart.config import Settings
from stalwart.dashboard.auth import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, session_binding
from stalwart.dashboard.backlog import oldest_pending
from stalwart.dashboard.flows import flows
from stalwart.dashboard.panels import PANELS
from stalwart.dashboard.ranges import RANGES
from stalwart.dashboard.servicestats import service_stats
from stalwart.envelope import utcnow
from stalwart.store import Store, queries
from stalwart.store.schema import messages

__all__ = [
    "NOT_PROBED",
    "PASSWORD",
    "USER",
    "Probe",
    "app_routes",
    "declare_queue",
    "login",
    "plan",
    "uncovered",
]

USER, PASSWORD = "bench", "bench-password-not-secret"
QUEUE = "bench-dead"

# Routes timed elsewhere, with the reason.
NOT_PROBED = {
    ("GET", "/live"): "a stream that never ends: timed by the live part (50 viewers)",
}

Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
Peer = Callable[[], Awaitable[Any]]


@dataclasses.dataclass(frozen=True)
class Probe:
    """One timed request: ``send`` it after ``prepare`` (untimed), expect ``ok``."""

    label: str
    method: str
    route: str  # the route's path as the application declares it
    send: Send
    ok: frozenset[int] = frozenset({200})
    peer: Peer | None = None
    prepare: Send | None = None


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the application serves (HEAD left out).

    FastAPI keeps included routers as such in ``app.routes``; its own walk
    (the one that builds the OpenAPI schema) flattens them.
    """
    found: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        if isinstance(context.route, Mount):
            found.add(("GET", f"{context.path}/{{path}}"))
        else:
            path = str(context.path)
            found.update((m, path) for m in (context.methods or set()) - {"HEAD"})
    return found


def uncovered(app: FastAPI, probes: list[Probe]) -> set[tuple[str, str]]:
    """Routes of ``app`` that neither a probe nor :data:`NOT_PROBED` covers."""
    return app_routes(app) - {(p.method, p.route) for p in probes} - set(NOT_PROBED)


_DETAIL = "/messages/{message_id:path}"
_SERVICE = "/services/{name:path}"


def _read(
    label: str, route: str, url: str | None = None, *, peer: Peer | None = None, **params: str
) -> Probe:
    """A GET of ``url`` (the route itself when it has no parameters in its path)."""
    target = url or route
    return Probe(label, "GET", route, lambda c: c.get(target, params=params), peer=peer)


_CSRF_INPUT = re.compile(f'name="{CSRF_FIELD}" value="([^"]+)"')


async def login(client: httpx.AsyncClient) -> httpx.Response:
    """Log in through the form, as a browser does (its CSRF cookie and token first)."""
    form = await client.get("/login")
    found = _CSRF_INPUT.search(form.text)
    if found is None:
        raise RuntimeError(
            "the login form carries no CSRF token: update benchmarks/_dashboard_routes.py"
        )
    data = {"user": USER, "password": PASSWORD, "next": "/", CSRF_FIELD: found.group(1)}
    return await client.post("/login", data=data)


async def _logged_in(client: httpx.AsyncClient) -> httpx.Response:
    if SESSION_COOKIE not in client.cookies:
        return await login(client)
    return httpx.Response(200)


def _csrf(app: FastAPI, client: httpx.AsyncClient) -> str:
    auth = app.state.dashboard.auth
    session = auth.session(client.cookies.get(SESSION_COOKIE))
    if session is None:
        raise RuntimeError("not logged in: the session cookie is missing or expired")
    token: str = auth.csrf_token(session_binding(session))
    return token


async def declare_queue(transport: Transport) -> None:
    """The queue whose (empty) dead letters the actions retry and purge."""
    await transport.declare(QueueSpec(name=QUEUE, patterns=("bench.dead.#",)))


async def plan(app: FastAPI, store: Store, settings: Settings) -> list[Probe]:
    """The probes of every route, over the data found in ``store``."""
    sample = (await queries.list_messages(store, queries.MessageFilter(), 50)).items
    probe_msg = sample[len(sample) // 2]
    first_page = await queries.list_messages(store, queries.MessageFilter(), 50)
    cursor = first_page.next_cursor or ""
    since = (utcnow() - timedelta(hours=1)).isoformat()
    filters: list[tuple[str, dict[str, str], queries.MessageFilter]] = [
        ("no filter", {}, queries.MessageFilter()),
        ("older page", {"cursor": cursor}, queries.MessageFilter()),
        ("topic exact", {"topic": "qa.verify.eu"}, queries.MessageFilter(topic="qa.verify.eu")),
        ("topic pipeline.#", {"topic": "pipeline.#"}, queries.MessageFilter(topic="pipeline.#")),
        ("topic sys.ha.#", {"topic": "sys.ha.#"}, queries.MessageFilter(topic="sys.ha.#")),
        ("kind", {"kind": "VerifyRequest"}, queries.MessageFilter(kind="VerifyRequest")),
        ("sender", {"sender": "qa@eu"}, queries.MessageFilter(sender="qa@eu")),
        ("service", {"service": "archive"}, queries.MessageFilter(service="archive")),
        ("state dead", {"state": "dead"}, queries.MessageFilter(state="dead")),
        ("since 1h", {"since": since}, queries.MessageFilter(since=utcnow() - timedelta(hours=1))),
        (
            "correlation",
            {"correlation": probe_msg.correlation_id or ""},
            queries.MessageFilter(correlation_id=probe_msg.correlation_id),
        ),
        ("text", {"text": "bandpass mosaic"}, queries.MessageFilter(text="bandpass mosaic")),
    ]
    window, half = timedelta(minutes=15), timedelta(seconds=30)

    async def overview_peer(span: timedelta = window, bucket: timedelta = half) -> None:
        await queries.components(store)
        await queries.counts_by_state(store)
        await queries.traffic(store, span, bucket)
        await queries.list_reports(store, limit=10)
        await queries.list_messages(store, queries.MessageFilter(), 20)

    async def map_peer() -> None:
        await flows(store, window)
        await queries.components(store)
        await queries.counts_by_state(store)

    async def metrics_peer() -> None:
        await queries.counts_by_state(store)
        await queries.components(store)
        await oldest_pending(store)

    def panel_peer(slug: str, events: bool) -> Peer:
        spec = PANELS[slug]

        async def peer() -> None:
            await spec.query(store.engine, settings)
            if events:
                page = await queries.list_messages(store, queries.MessageFilter(topic=spec.events))
                ids = [m.id for m in page.items]
                async with store.engine.connect() as conn:
                    await conn.execute(messages.select().where(messages.c.id.in_(ids)))

        return peer

    def listing(f: queries.MessageFilter, after: str | None) -> Peer:
        return lambda: queries.list_messages(store, f, 50, after)

    day = RANGES["24h"]
    get_message = lambda: queries.get_message(store, probe_msg.id)  # noqa: E731
    probes = [
        _read("overview", "/", peer=overview_peer),
        _read(
            "overview 24 h",
            "/",
            peer=lambda: overview_peer(
                timedelta(seconds=day.window), timedelta(seconds=day.bucket)
            ),
            range="24h",
        ),
        _read("system map", "/map", peer=map_peer),
        _read("message detail", _DETAIL, f"/messages/{probe_msg.id}", peer=get_message),
        _read("reports", "/reports", peer=lambda: queries.list_reports(store, limit=51)),
        _read("dead letters", "/dead-letters"),
        _read("login form", "/login"),
        _read("metrics", "/metrics", peer=metrics_peer),
        _read("static app.css", "/static/{path}", "/static/app.css"),
        _read("openapi schema", "/api/openapi.json"),
        _read("api overview", "/api/overview", peer=overview_peer),
        _read("api components", "/api/components", peer=lambda: queries.components(store)),
        _read("api traffic", "/api/traffic", peer=lambda: queries.traffic(store, window, half)),
        _read("api message", f"/api{_DETAIL}", f"/api/messages/{probe_msg.id}", peer=get_message),
        _read("api reports", "/api/reports", peer=lambda: queries.list_reports(store, limit=100)),
        _read("api bus", "/api/bus"),
        _read("api queues", "/api/queues"),
        _read("api dead letters", "/api/dead-letters"),
        Probe(
            "login",
            "POST",
            "/login",
            login,
            ok=frozenset({303}),
            prepare=lambda c: _logout_all(c),
        ),
        Probe(
            "logout",
            "POST",
            "/logout",
            lambda c: c.post("/logout", data={CSRF_FIELD: _csrf(app, c)}),
            ok=frozenset({303}),
            prepare=_logged_in,
        ),
        Probe(
            "dead letters: purge (form)",
            "POST",
            "/dead-letters",
            lambda c: c.post(
                "/dead-letters",
                data={
                    CSRF_FIELD: _csrf(app, c),
                    "action": "purge",
                    "queue": QUEUE,
                    "scope": "all",
                },
            ),
            ok=frozenset({303}),
            prepare=_logged_in,
        ),
    ]
    for action in ("retry", "purge"):
        probes.append(
            Probe(
                f"api dead letters: {action}",
                "POST",
                "/api/dead-letters/{queue}/{action}",
                _action(app, action),
                prepare=_logged_in,
            )
        )
    for label, params, f in filters:
        peer = listing(f, params.get("cursor"))
        probes.append(_read(f"messages: {label}", "/messages", peer=peer, **params))
        probes.append(_read(f"api messages: {label}", "/api/messages", peer=peer, **params))
    for key, span in RANGES.items():
        stats = lambda w=span.window, b=span.bucket: service_stats(store, "qa", w, b)  # noqa: E731
        service = _read(f"service qa {key}", _SERVICE, "/services/qa", peer=stats, range=key)
        probes.append(service)
    for slug in PANELS:
        probes.append(_read(slug, f"/{slug}", peer=panel_peer(slug, True)))
        api = f"/api/panels/{slug}"
        probes.append(_read(f"api {slug}", "/api/panels/{name}", api, peer=panel_peer(slug, False)))
    return probes


def _action(app: FastAPI, action: str) -> Send:
    """Retry or purge the bench queue's dead letters through the API, logged in."""
    return lambda c: c.post(
        f"/api/dead-letters/{QUEUE}/{action}", headers={CSRF_HEADER: _csrf(app, c)}
    )


async def _logout_all(client: httpx.AsyncClient) -> httpx.Response:
    """Forget the session cookie, so the next login is a fresh one."""
    client.cookies.delete(SESSION_COOKIE)
    return httpx.Response(200)
