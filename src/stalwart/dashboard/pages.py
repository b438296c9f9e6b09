"""Server-rendered pages. Each page can also render just its content
(``?fragment=1``), which the page's script fetches to refresh itself live."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from stalwart.dashboard import scrape, sysmap, views
from stalwart.dashboard.api import bus_or_503, dead_letter_action
from stalwart.dashboard.auth import CSRF_FIELD, SESSION_COOKIE
from stalwart.dashboard.busview import dead_letter_items, queue_infos
from stalwart.dashboard.live import TooManyStreams
from stalwart.dashboard.metrics import CONTENT_TYPE
from stalwart.dashboard.models import (
    DeadLetterItem,
    MessageFilter,
    MessagePage,
    QueueInfo,
    ReportView,
    active_filters,
)
from stalwart.dashboard.panels import PANELS, event_subject, load_panel
from stalwart.dashboard.ranges import RANGES, RangeKey, pick
from stalwart.dashboard.web import csrf_binding, dash, render, require_action, require_read
from stalwart.envelope import DeliveryState
from stalwart.errors import StalwartError
from stalwart.topics import validate_pattern

__all__ = ["filter_from_query", "router"]

router = APIRouter(include_in_schema=False)
# Every state always has its tile, trouble first: the layout does not jump.
_TILES = ("failed", "dead", "rejected", "expired", "received", "sent", "consumed")
_Read = Depends(require_read)


@router.get("/", response_class=HTMLResponse, dependencies=[_Read])
async def overview_page(
    request: Request,
    range: Annotated[RangeKey | None, Query()] = None,
) -> HTMLResponse:
    state = dash(request)
    span = pick(range, state.config.traffic_window, state.config.traffic_bucket)
    traffic, traffic_error = await views.traffic(state, span)
    data = await views.overview(state, traffic)
    series = views.grouped_series(traffic.series) if traffic else []
    now_rate = sum(sum(s.counts[-2:]) for s in series) / (2 * traffic.bucket) if traffic else 0.0
    inbound: dict[str, float] = {}
    for edge in traffic.edges if traffic else []:
        inbound[edge.target] = inbound.get(edge.target, 0.0) + edge.recent_rate
    recent = MessagePage(items=[])
    if request.query_params.get("fragment") != "1":  # the ticker is not part of a refresh
        recent, _ = await views.guarded(
            "the store", state.source.list_messages(MessageFilter(), 20, None), recent
        )
    return render(
        request,
        "overview.html",
        overview=data,
        traffic=traffic,
        traffic_error=traffic_error,
        series=series,
        recent_rate=now_rate,
        states=_TILES,
        inbound=inbound,
        recent=recent.items,
        span=span,
        ranges=RANGES.values(),
    )


@router.get("/map", response_class=HTMLResponse, dependencies=[_Read])
async def map_page(request: Request) -> HTMLResponse:
    state = dash(request)
    window = state.config.traffic_window
    found, flows_error = await views.guarded("the store's flows", state.source.flows(window), {})
    comps, comps_error = await views.guarded(
        "the store's components", state.source.components(), []
    )
    states, states_error = await views.guarded(
        "the store's state counts", state.source.counts_by_service(), {}
    )
    shown = {key: value for key, value in found.items() if not views.is_infra(key[1])}
    graph = sysmap.build(
        shown,
        window,
        views.service_status(comps),
        {c.service: c.site for c in sorted(comps, key=lambda c: c.site, reverse=True)},
        states,
    )
    svg, layout_error = await views.guarded("the map layout", sysmap.render(graph), None)
    errors = (flows_error, comps_error, states_error, layout_error)
    return render(
        request,
        "map.html",
        svg=svg,
        graph=graph,
        window=window,
        error="; ".join(e for e in errors if e) or None,
    )


@router.get("/messages", response_class=HTMLResponse, dependencies=[_Read])
async def messages_page(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    state = dash(request)
    error = None
    try:
        filters = filter_from_query(request.query_params)
    except ValueError as exc:
        filters = MessageFilter()
        error = str(exc)
    page = MessagePage(items=[])
    if error is None:
        try:
            page = await state.source.list_messages(filters, limit, cursor or None)
        except (StalwartError, ValueError) as exc:
            error = str(exc)
    return render(
        request,
        "messages.html",
        status=400 if error and "unavailable" not in error else 200,
        page=page,
        filters=filters,
        active=active_filters(filters),
        limit=limit,
        error=error,
    )


_STATES = frozenset(s.value for s in DeliveryState)


def filter_from_query(params: Mapping[str, str]) -> MessageFilter:
    """The message filter of a page's query string; ValueError says what is wrong."""
    raw = {n: (params.get(n) or "").strip()[:255] or None for n in _FILTER_NAMES}
    times: dict[str, datetime | None] = {}
    for key in ("since", "until"):
        value = raw.pop(key)
        try:
            times[key] = datetime.fromisoformat(value) if value else None
        except ValueError:
            raise ValueError(f"{key} must be a time like 2026-01-31T12:00, not {value!r}") from None
    if raw["state"] and raw["state"] not in _STATES:
        raise ValueError(f"unknown state {raw['state']!r}: use one of {', '.join(sorted(_STATES))}")
    if raw["topic"]:
        validate_pattern(raw["topic"])
    raw["correlation_id"] = raw.pop("correlation")
    return MessageFilter.model_validate({**raw, **times})


_FILTER_NAMES = (
    "topic",
    "kind",
    "sender",
    "service",
    "state",
    "since",
    "until",
    "correlation",
    "text",
)


@router.get("/messages/{message_id:path}", response_class=HTMLResponse, dependencies=[_Read])
async def message_page(request: Request, message_id: str) -> HTMLResponse:
    state = dash(request)
    detail, error = await views.guarded(
        "the store", state.source.get_message(message_id[:64]), None
    )
    status = 404 if detail is None and error is None else 200
    return render(
        request, "message.html", status=status, detail=detail, message_id=message_id, error=error
    )


REPORTS_PER_PAGE = 50


@router.get("/reports", response_class=HTMLResponse, dependencies=[_Read])
async def reports_page(
    request: Request,
    level: Literal["", "debug", "info", "warning", "error", "critical"] = "",
    source: Annotated[str, Query(max_length=255)] = "",
    page: Annotated[int, Query(ge=1, le=200)] = 1,
) -> HTMLResponse:
    state = dash(request)
    reports, error = await views.guarded(
        "the store's reports",
        state.source.list_reports(level or None, source or None, page * REPORTS_PER_PAGE + 1),
        list[ReportView](),
    )
    shown = reports[(page - 1) * REPORTS_PER_PAGE : page * REPORTS_PER_PAGE]
    more = len(reports) > page * REPORTS_PER_PAGE and page < 200
    query = {k: v for k, v in (("level", level), ("source", source)) if v}
    return render(
        request,
        "reports.html",
        reports=shown,
        level=level,
        source=source,
        error=error,
        page=page,
        newer=urlencode({**query, "page": page - 1}) if page > 1 else None,
        older=urlencode({**query, "page": page + 1}) if more else None,
    )


@router.get("/dead-letters", response_class=HTMLResponse, dependencies=[_Read])
async def dead_letters_page(
    request: Request,
    queue: Annotated[str, Query(max_length=255)] = "",
    done: Annotated[str, Query(max_length=200)] = "",
    count: Annotated[int, Query(ge=0)] = 0,
) -> HTMLResponse:
    state = dash(request)
    error = state.bus_error
    queues: list[QueueInfo] = []
    letters: list[DeadLetterItem] = []
    if state.transport is not None and error is None:
        queues, error = await views.guarded("the bus", queue_infos(state.transport), [])
        names = [q.name for q in queues if not queue or q.name == queue]
        if error is None and names:
            letters, error = await views.guarded(
                "the bus", dead_letter_items(state.transport, names, 100), []
            )
    return render(
        request,
        "dead_letters.html",
        queues=queues,
        letters=letters,
        queue=queue,
        done=_banner(done, count, queue, queues),
        error=error,
        csrf_field=CSRF_FIELD,
    )


_BANNERS = {
    "retry": "retried {count} dead letter(s){where}",
    "purge": "purged {count} dead letter(s){where}",
}


def _banner(done: str, count: int, queue: str, queues: list[QueueInfo]) -> str | None:
    """The success banner, from a fixed set: a link cannot make the page say anything else."""
    template = _BANNERS.get(done)
    if template is None:
        return None
    known = any(q.name == queue for q in queues)
    return template.format(count=count, where=f" from {queue}" if known else "")


@router.post("/dead-letters", response_class=RedirectResponse)
async def dead_letters_action(request: Request) -> RedirectResponse:
    form = await request.form()
    user = require_action(request, str(form.get(CSRF_FIELD) or ""))
    state = dash(request)
    bus_or_503(state)
    action = str(form.get("action") or "")
    queue = str(form.get("queue") or "")
    if action not in ("retry", "purge") or not queue:
        raise HTTPException(400, "choose retry or purge and a queue")
    keys = [str(k) for k in form.getlist("key") if k] or None
    if form.get("scope") != "all" and keys is None:
        raise HTTPException(400, "select dead letters first, or use 'all'")
    result = await dead_letter_action(
        state,
        user,
        queue,
        "retry" if action == "retry" else "purge",
        None if form.get("scope") == "all" else keys,
    )
    query = urlencode({"queue": queue, "done": result.action, "count": result.count})
    return RedirectResponse(f"/dead-letters?{query}", status_code=303)


async def _panel_page(request: Request, slug: str) -> HTMLResponse:
    state = dash(request)
    spec = PANELS[slug]
    engine, _ = await views.guarded("the store", state.source.engine(), None)
    panel = await load_panel(spec, state.settings, engine)
    events, error = await views.guarded(
        "the store",
        state.source.list_messages(MessageFilter(topic=spec.events), 50, None),
        MessagePage(items=[]),
    )
    bodies, _ = await views.guarded(
        "the store", state.source.bodies([m.id for m in events.items]), {}
    )
    return render(
        request,
        "panel.html",
        spec=spec,
        panel=panel,
        events=[(m, *event_subject(bodies.get(m.id))) for m in events.items],
        error=error,
        unverified=state.metrics.events.unverified,
    )


@router.get("/processes", response_class=HTMLResponse, dependencies=[_Read])
async def processes_page(request: Request) -> HTMLResponse:
    return await _panel_page(request, "processes")


@router.get("/ha", response_class=HTMLResponse, dependencies=[_Read])
async def ha_page(request: Request) -> HTMLResponse:
    return await _panel_page(request, "ha")


@router.get("/integrity", response_class=HTMLResponse, dependencies=[_Read])
async def integrity_page(request: Request) -> HTMLResponse:
    return await _panel_page(request, "integrity")


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request, next: Annotated[str, Query(max_length=500)] = "/"
) -> HTMLResponse:
    return render(request, "login.html", next=_safe_next(next), error=None, csrf_field=CSRF_FIELD)


def _safe_next(target: str) -> str:
    """Only local paths: never redirect a user to another site after login."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    state = dash(request)
    form = await request.form()
    user = str(form.get("user") or "")[:100]
    password = str(form.get("password") or "")[:1000]
    next_url = _safe_next(str(form.get("next") or "/"))
    token = str(form.get(CSRF_FIELD) or "")
    if not state.auth.csrf_ok(csrf_binding(request), token):
        return render(
            request,
            "login.html",
            status=403,
            next=next_url,
            csrf_field=CSRF_FIELD,
            error="the form expired: please try again",
        )
    # scrypt takes 50 to 200 ms of CPU: in a thread (it releases the GIL), so that a
    # login does not stall every other page and live stream for that long.
    if not state.auth.has_users or not await asyncio.to_thread(state.auth.check, user, password):
        views.log_failed_login(user, request.client.host if request.client else "unknown")
        return render(
            request,
            "login.html",
            status=401,
            next=next_url,
            csrf_field=CSRF_FIELD,
            error="wrong user or password"
            if state.auth.has_users
            else "no users are configured: add one to [dashboard.users]",
        )
    views.log_login(user)
    state.auth.revoke(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        state.auth.issue(user),
        max_age=int(state.auth.ttl),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    form = await request.form()
    auth = dash(request).auth
    if not auth.csrf_ok(csrf_binding(request), str(form.get(CSRF_FIELD) or "")):
        raise HTTPException(403, "missing or invalid CSRF token: reload the page and try again")
    auth.revoke(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/live", dependencies=[_Read])
async def live(
    request: Request,
    pattern: Annotated[str, Query(max_length=255)] = "#",
    infra: bool = False,
) -> StreamingResponse:
    """Server-sent events: batches of new messages matching ``pattern``.

    Heartbeats and lifecycle batches are left out unless ``infra=true``.
    """
    try:
        validate_pattern(pattern)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    hub = dash(request).hub
    client = request.client.host if request.client else "unknown"
    if hub.streams_of(client) >= hub.per_client:
        raise HTTPException(
            429,
            f"too many live streams from {client} (at most {hub.per_client}): close other "
            "dashboard tabs or raise [dashboard] live_per_client",
        )

    async def frames() -> object:
        try:
            async with hub.subscribe(pattern, infra=infra, client=client) as viewer:
                async for frame in hub.stream(viewer):
                    if await request.is_disconnected():
                        return
                    yield frame
        except TooManyStreams:  # lost a race with the same client's other requests
            return

    return StreamingResponse(
        frames(),  # type: ignore[arg-type]
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format; refreshes the scrape-time gauges first."""
    require_read(request)
    state = dash(request)
    await scrape.refresh(state)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
