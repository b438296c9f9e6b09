"""The JSON API under ``/api/`` (schema at ``/api/openapi.json``).

Read routes follow the read rule (open on loopback, login elsewhere); the
dead-letter actions need a session and the CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from stalwart.bus import Transport
from stalwart.dashboard import views
from stalwart.dashboard.auth import Session
from stalwart.dashboard.busview import dead_letter_items, queue_infos
from stalwart.dashboard.http_status import http_error
from stalwart.dashboard.models import (
    BusStatus,
    DeadLetterItem,
    Instance,
    MessageFilter,
    MessagePage,
    MessageView,
    Overview,
    QueueInfo,
    ReportView,
    Traffic,
)
from stalwart.dashboard.panels import PANELS, PanelData, load_panel
from stalwart.dashboard.state import DashboardState
from stalwart.dashboard.web import dash, require_action, require_read
from stalwart.envelope import DeliveryState
from stalwart.errors import StalwartError, TopicError
from stalwart.topics import validate_pattern

__all__ = [
    "ActionResult",
    "DeadLetterAction",
    "bus_or_503",
    "dead_letter_action",
    "message_filter",
    "router",
]

# What a client may be told besides 200 and 422 (stalwart.dashboard.http_status).
_Answers = dict[int | str, dict[str, Any]]
_DETAIL = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {"detail": {"type": "string"}},
            "required": ["detail"],
        }
    }
}
# 400 and 429 can answer every route: RequestGuard refuses a Host name not allowed
# (DNS rebinding) or a NUL in the address, RateLimitMiddleware a client over its bucket.
_BAD_INPUT: _Answers = {
    400: {
        "description": "Bad input, a Host name not in the allowed hosts, or a NUL character "
        "in the address: the detail says what to fix",
        "content": _DETAIL,
    }
}
_TOO_MANY: _Answers = {
    429: {
        "description": "Over the client's rate limit ([dashboard] rate_limit, rate_burst): "
        "wait Retry-After seconds",
        "headers": {
            "Retry-After": {
                "description": "seconds until a request may go, rounded up",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
        "content": _DETAIL,
    }
}
# 401 can answer every route too: require_read refuses a client with no session
# when reads need a login ([dashboard] login_for_reads, by default beyond loopback).
_LOGIN: _Answers = {
    401: {
        "description": "Not logged in, and this dashboard requires a login for reads "
        "([dashboard] login_for_reads; by default when bound beyond loopback): log in at /login",
        "content": _DETAIL,
    }
}
_UNAVAILABLE: _Answers = {503: {"description": "The store or the bus does not answer: retry later"}}
_STORE = _BAD_INPUT | _UNAVAILABLE

router = APIRouter(
    prefix="/api",
    tags=["api"],
    dependencies=[Depends(require_read)],
    responses=_BAD_INPUT | _LOGIN | _TOO_MANY,
)

StateName = Literal["sent", "received", "failed", "consumed", "dead", "expired", "rejected"]
_Text = Annotated[str | None, Query(max_length=255)]
_QueueName = Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.:\-]+$")]


def message_filter(
    topic: Annotated[
        str | None, Query(max_length=255, description="topic pattern: * and #")
    ] = None,
    kind: _Text = None,
    sender: _Text = None,
    service: _Text = None,
    state: StateName | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    correlation: Annotated[str | None, Query(max_length=64)] = None,
    text: Annotated[str | None, Query(max_length=200)] = None,
) -> MessageFilter:
    """Query parameters of the message list; the topic pattern is checked here."""
    if topic:
        try:
            validate_pattern(topic)
        except TopicError as exc:
            raise HTTPException(400, str(exc)) from None
    return MessageFilter(
        topic=topic or None,
        kind=kind or None,
        sender=sender or None,
        service=service or None,
        state=DeliveryState(state).value if state else None,
        since=since,
        until=until,
        correlation_id=correlation or None,
        text=(text or "").strip() or None,
    )


def _state(request: Request) -> DashboardState:
    return dash(request)


@router.get("/overview", response_model=Overview, summary="Everything on the front page")
async def api_overview(request: Request) -> Overview:
    return await views.overview(_state(request))


@router.get(
    "/components",
    response_model=list[Instance],
    summary="Service instances",
    responses=_UNAVAILABLE,
)
async def api_components(request: Request) -> list[Instance]:
    state = _state(request)
    try:
        return views.mark_unverified(state, await state.source.components())
    except StalwartError as exc:
        raise http_error(exc) from None


@router.get(
    "/traffic",
    response_model=Traffic,
    summary="Traffic per topic and per edge",
    responses=_STORE,
)
async def api_traffic(
    request: Request,
    window: Annotated[float, Query(ge=10, le=7 * 86400)] = 900.0,
    bucket: Annotated[float, Query(ge=1, le=86400)] = 30.0,
) -> Traffic:
    if window / bucket > 1000:
        raise HTTPException(
            400, "too many buckets: use at most 1000 (raise bucket or lower window)"
        )
    try:
        return await _state(request).source.traffic(window, bucket)
    except StalwartError as exc:
        raise http_error(exc) from None


@router.get(
    "/messages",
    response_model=MessagePage,
    summary="Filtered, keyset-paged messages",
    responses=_STORE,
)
async def api_messages(
    request: Request,
    filters: Annotated[MessageFilter, Depends(message_filter)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> MessagePage:
    try:
        return await _state(request).source.list_messages(filters, limit, cursor or None)
    except (TopicError, ValueError) as exc:
        raise HTTPException(400, f"bad filter or cursor: {exc}") from None
    except StalwartError as exc:
        raise http_error(exc) from None


@router.get(
    "/messages/{message_id:path}",
    response_model=MessageView,
    summary="A message, its timeline and causal chain",
    responses={404: {"description": "No such message"}, **_STORE},
)
async def api_message(
    request: Request, message_id: Annotated[str, Path(min_length=1, max_length=64)]
) -> MessageView:
    try:
        detail = await _state(request).source.get_message(message_id)
    except StalwartError as exc:
        raise http_error(exc) from None
    if detail is None:
        raise HTTPException(404, f"no message {message_id!r} in the store")
    return detail


@router.get(
    "/reports",
    response_model=list[ReportView],
    summary="Reports from batch tools",
    responses=_STORE,
)
async def api_reports(
    request: Request,
    level: Literal["debug", "info", "warning", "error", "critical"] | None = None,
    source: _Text = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ReportView]:
    try:
        return await _state(request).source.list_reports(level, source or None, limit)
    except StalwartError as exc:
        raise http_error(exc) from None


def bus_or_503(state: DashboardState) -> Transport:
    """The bus, or a 503 saying why the dashboard has none."""
    if state.transport is None or state.bus_error:
        raise HTTPException(503, state.bus_error or "the dashboard has no bus connection")
    return state.transport


@router.get("/bus", response_model=BusStatus, summary="Whether the dashboard is on the bus")
async def api_bus(request: Request) -> BusStatus:
    return _state(request).bus_status()


@router.get(
    "/queues",
    response_model=list[QueueInfo],
    summary="Queue depths and dead letters",
    responses=_UNAVAILABLE,
)
async def api_queues(request: Request) -> list[QueueInfo]:
    state = _state(request)
    bus = bus_or_503(state)
    try:
        return await queue_infos(bus)
    except (StalwartError, TimeoutError) as exc:
        raise HTTPException(503, f"the bus did not answer: {exc}") from None


@router.get(
    "/dead-letters",
    response_model=list[DeadLetterItem],
    summary="Dead letters",
    responses={404: {"description": "No such queue"}, **_UNAVAILABLE},
)
async def api_dead_letters(
    request: Request,
    queue: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetterItem]:
    state = _state(request)
    bus = bus_or_503(state)
    try:
        names = await bus.queues()
        if queue:
            if queue not in names:
                raise HTTPException(404, f"no queue {queue!r}: see /api/queues")
            names = [queue]
        return await dead_letter_items(bus, names, limit)
    except (StalwartError, TimeoutError) as exc:
        raise HTTPException(503, f"the bus did not answer: {exc}") from None


class DeadLetterAction(BaseModel):
    """Which dead letters to act on: ``keys``, or all of the queue's when omitted."""

    keys: list[Annotated[str, Field(max_length=200)]] | None = Field(default=None, max_length=1000)


class ActionResult(BaseModel):
    queue: str
    action: Literal["retry", "purge"]
    count: int
    by: str


async def dead_letter_action(
    state: DashboardState,
    user: Session,
    queue: str,
    action: Literal["retry", "purge"],
    keys: list[str] | None,
) -> ActionResult:
    """Retry or purge dead letters of ``queue``; shared by the API and the pages."""
    bus = bus_or_503(state)
    try:
        if queue not in await bus.queues():
            raise HTTPException(404, f"no queue {queue!r}: see /api/queues")
        if action == "retry":
            count = await bus.requeue_dead(queue, keys)
        else:
            count = await bus.purge_dead(queue, keys)
    except StalwartError as exc:
        raise http_error(exc) from None
    views.log_action(user.user, action, queue, count, keys)
    return ActionResult(queue=queue, action=action, count=count, by=user.user)


@router.post(
    "/dead-letters/{queue}/{action}",
    response_model=ActionResult,
    summary="Retry or purge dead letters (login and X-CSRF-Token required)",
    responses={
        401: {"description": "Not logged in: actions always need one", "content": _DETAIL},
        403: {
            "description": "A missing or wrong X-CSRF-Token, a cross-site or cross-origin "
            "request, or no users configured: the detail says which",
            "content": _DETAIL,
        },
        404: {"description": "No such queue"},
        **_STORE,
    },
)
async def api_dead_letter_action(
    request: Request,
    queue: _QueueName,
    action: Literal["retry", "purge"],
    body: DeadLetterAction | None = None,
) -> ActionResult:
    user = require_action(request, None)
    keys = body.keys if body else None
    return await dead_letter_action(_state(request), user, queue, action, keys)


@router.get(
    "/panels/{name}",
    response_model=PanelData,
    summary="A panel of another part",
    responses=_UNAVAILABLE,
)
async def api_panel(request: Request, name: Literal["processes", "ha", "integrity"]) -> PanelData:
    state = _state(request)
    engine, _ = await views.guarded("the store", state.source.engine(), None)
    return await load_panel(PANELS[name], state.settings, engine)
