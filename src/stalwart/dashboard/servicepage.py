"""The service page, ``/services/<name>``: one service's work over a chosen time range."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from stalwart.dashboard import views
from stalwart.dashboard.charts import value_chart
from stalwart.dashboard.ranges import RANGES, RangeKey, pick
from stalwart.dashboard.servicestats import ServiceStats
from stalwart.dashboard.web import dash, render, require_read

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get(
    "/services/{name:path}", response_class=HTMLResponse, dependencies=[Depends(require_read)]
)
async def service_page(
    request: Request,
    name: str,
    range: Annotated[RangeKey | None, Query()] = None,
) -> HTMLResponse:
    state = dash(request)
    span = pick(range or "1h", state.config.traffic_window, state.config.traffic_bucket)
    stats, stats_error = await views.guarded(
        "the store's deliveries",
        state.source.service_stats(name, span.window, span.bucket),
        None,
    )
    comps, comps_error = await views.guarded(
        "the store's components", state.source.components(), []
    )
    instances = [c for c in views.mark_unverified(state, comps) if c.service == name]
    return render(
        request,
        "service.html",
        name=name,
        span=span,
        ranges=RANGES.values(),
        stats=stats,
        plots=_charts(stats) if stats else {},
        instances=instances,
        error="; ".join(e for e in (stats_error, comps_error) if e) or None,
    )


def _charts(stats: ServiceStats) -> dict[str, object]:
    b, start = stats.bucket, stats.start
    ms = [(v * 1000 if v is not None else None) for v in stats.latency_p50]
    ms95 = [(v * 1000 if v is not None else None) for v in stats.latency_p95]
    return {
        "throughput": value_chart(
            [
                ("arrived", [n / b for n in stats.arrived]),
                ("consumed", [n / b for n in stats.consumed]),
                ("failed", [n / b for n in stats.failed]),
            ],
            b,
            start=start,
            title="messages per second",
        ),
        "latency": value_chart(
            [("p50", ms), ("p95", ms95)],
            b,
            start=start,
            title="handler latency, ms",
            empty="nothing consumed in this range",
        ),
        "depth": value_chart(
            [("queued", [float(n) for n in stats.depth])],
            b,
            start=start,
            title="messages queued",
            empty="nothing queued in this range",
        ),
    }
