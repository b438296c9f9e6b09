"""Assembling what a view shows from the store and the bus, shared by pages and API.

Each source is asked with a timeout; a source that fails leaves its part of
the page empty with the reason shown, never a broken page.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable
from typing import TypeVar

from stalwart.dashboard.busview import queue_infos
from stalwart.dashboard.flows import topic_group
from stalwart.dashboard.models import (
    Availability,
    Instance,
    Overview,
    QueueInfo,
    ReportView,
    ServiceGroup,
    SiteGroup,
    TopicSeries,
    Traffic,
)
from stalwart.dashboard.ranges import TimeRange
from stalwart.dashboard.state import DashboardState
from stalwart.envelope import utcnow
from stalwart.errors import StalwartError
from stalwart.topics import matches

__all__ = [
    "best_status",
    "group_by_site",
    "grouped_series",
    "guarded",
    "is_infra",
    "log_action",
    "log_failed_login",
    "log_login",
    "mark_unverified",
    "overview",
    "service_status",
    "traffic",
]

_log = logging.getLogger("stalwart.dashboard")
T = TypeVar("T")
_ORDER = {Availability.UP: 0, Availability.LATE: 1, Availability.DOWN: 2}


async def guarded(
    what: str, call: Awaitable[T], default: T, timeout: float = 10.0
) -> tuple[T, str | None]:
    """``call``'s result, or ``default`` and a message saying what failed."""
    try:
        return await asyncio.wait_for(call, timeout), None
    except TimeoutError:
        return default, f"{what} did not answer within {timeout:.0f} s"
    except StalwartError as exc:
        _log.warning("%s failed: %s", what, exc)
        return default, f"{what}: {exc}"


INFRA_PATTERNS = ("sys.heartbeat.#", "sys.lifecycle")


def is_infra(topic: str) -> bool:
    """Heartbeats and lifecycle batches: shown as availability and states, not as traffic."""
    return any(matches(p, topic) for p in INFRA_PATTERNS)


def best_status(instances: list[Instance]) -> Availability:
    return min((i.status for i in instances), key=_ORDER.__getitem__, default=Availability.DOWN)


def group_by_site(instances: list[Instance]) -> list[SiteGroup]:
    """Sites in name order, each with its services and their instances."""
    tree: dict[str, dict[str, list[Instance]]] = defaultdict(lambda: defaultdict(list))
    for inst in instances:
        tree[inst.site][inst.service].append(inst)
    return [
        SiteGroup(
            site=site,
            services=[
                ServiceGroup(
                    name=name,
                    site=site,
                    status=best_status(members),
                    instances=sorted(members, key=lambda i: i.instance),
                )
                for name, members in sorted(services.items())
            ],
        )
        for site, services in sorted(tree.items())
    ]


def service_status(instances: list[Instance]) -> dict[str, Availability]:
    """Each service's best availability across sites (for the system map)."""
    by_service: dict[str, list[Instance]] = defaultdict(list)
    for inst in instances:
        by_service[inst.service].append(inst)
    return {name: best_status(members) for name, members in by_service.items()}


def grouped_series(series: list[TopicSeries]) -> list[TopicSeries]:
    """Traffic per topic without heartbeats and life-cycle batches, reply topics as one."""
    merged: dict[str, list[int]] = {}
    for s in series:
        if is_infra(s.topic):
            continue
        into = merged.setdefault(topic_group(s.topic), [0] * len(s.counts))
        for i, n in enumerate(s.counts[: len(into)]):
            into[i] += n
    return [TopicSeries(topic=t, counts=c) for t, c in merged.items()]


def mark_unverified(state: DashboardState, instances: list[Instance]) -> list[Instance]:
    """Flag the instances whose latest sys.* message did not carry a valid token."""
    judge = state.metrics.events.unverified
    return [
        i.model_copy(update={"unverified": True})
        if judge(f"{i.service}@{i.site}/{i.instance}")
        else i
        for i in instances
    ]


async def traffic(
    state: DashboardState, span: TimeRange | None = None
) -> tuple[Traffic | None, str | None]:
    """Traffic over ``span``, or over the configured window."""
    cfg = state.config
    window, bucket = (
        (span.window, span.bucket) if span else (cfg.traffic_window, cfg.traffic_bucket)
    )
    return await guarded(
        "the store's traffic statistics", state.source.traffic(window, bucket), None
    )


async def overview(state: DashboardState, traffic_data: Traffic | None = None) -> Overview:
    """The front page's data."""
    comps_call = guarded("the store's components", state.source.components(), list[Instance]())
    counts_call = guarded("the store's state counts", state.source.counts_by_state(), {})
    reports_call = guarded(
        "the store's reports", state.source.list_reports(None, None, 10), list[ReportView]()
    )
    (comps, e1), (counts, e2), (reports, e3) = await asyncio.gather(
        comps_call, counts_call, reports_call
    )
    comps = mark_unverified(state, comps)
    bus_error = state.bus_error
    queues: list[QueueInfo] = []
    if state.transport is not None and bus_error is None:
        queues, bus_error = await guarded("the bus", queue_infos(state.transport), [])
    if traffic_data is None:
        traffic_data, e4 = await traffic(state)
    else:
        e4 = None
    rates: dict[str, float] = {}
    for topic, rate in (traffic_data.rates() if traffic_data else {}).items():
        if not is_infra(topic):
            rates[topic_group(topic)] = rates.get(topic_group(topic), 0.0) + rate
    bus = state.bus_status()
    store_error = "; ".join(e for e in (e1, e2, e3, e4) if e) or None
    return Overview(
        generated_at=utcnow(),
        sites=group_by_site(comps),
        counts_by_state=counts,
        rates=dict(sorted(rates.items(), key=lambda kv: kv[1], reverse=True)),
        queues=queues,
        reports=reports,
        bus=bus,
        bus_error=bus_error,
        store_error=store_error,
    )


def log_action(user: str, action: str, queue: str, count: int, keys: list[str] | None) -> None:
    """Actions are logged with who did what, for the operators' audit trail."""
    _log.info(
        "dead letters %s: user=%s queue=%s count=%d keys=%s",
        action,
        user,
        queue,
        count,
        "all" if keys is None else len(keys),
    )


def log_login(user: str) -> None:
    _log.info("login: user=%s", user)


def log_failed_login(user: str, client: str) -> None:
    """Failed logins are logged (the name as typed, repr'd so it cannot forge a line)."""
    _log.warning("login failed: user=%r client=%s", user, client)
