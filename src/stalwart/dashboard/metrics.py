"""Prometheus metrics at ``/metrics`` from the dashboard's own registry.

Nothing is registered at import time: :class:`DashboardMetrics` owns a
``CollectorRegistry``. Gauges that describe the system now (deliveries by
state, queues, instances, backlog age, HA leaders, the outbox) are refreshed
at scrape time from the store's count tables and indexes and from the bus,
never by scanning the store; counters (messages by topic, per-service
outcomes, handler time, restarts, failovers, integrity events) come from the
live feed as things happen (:mod:`stalwart.dashboard.eventmetrics`). Every
label set is bounded (:mod:`stalwart.dashboard.labels`).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stalwart.dashboard.eventmetrics import EventMetrics
from stalwart.dashboard.labels import LabelCap
from stalwart.dashboard.models import Availability, Instance, QueueInfo
from stalwart.envelope import DeliveryState, utcnow
from stalwart.service import TokenAuthority

__all__ = ["CONTENT_TYPE", "DashboardMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STATES = tuple(s.value for s in DeliveryState)


class DashboardMetrics:
    """The metrics of one dashboard app."""

    def __init__(self, authority: TokenAuthority | None = None, label_limit: int = 500) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.label_limit = label_limit
        self.events = EventMetrics(r, authority, label_limit)
        gauge, counter = partial(Gauge, registry=r), partial(Counter, registry=r)
        instance = ["service", "site", "instance"]
        self.deliveries = gauge(
            "stalwart_deliveries", "Deliveries in the store by state", ["state"]
        )
        self.service_deliveries = gauge(
            "stalwart_service_deliveries",
            "Deliveries in the store by service and state",
            ["service", "state"],
        )
        self.oldest_pending = gauge(
            "stalwart_oldest_pending_age_seconds",
            "Age of the oldest message a service received and has not finished",
            ["service"],
        )
        self.queue_depth = gauge(
            "stalwart_queue_depth", "Messages in a service queue", ["queue", "status"]
        )
        self.dead_letters = gauge(
            "stalwart_dead_letters", "Dead letters of a service queue", ["queue"]
        )
        self.heartbeat_age = gauge(
            "stalwart_heartbeat_age_seconds", "Seconds since an instance's last heartbeat", instance
        )
        self.instance_up = gauge(
            "stalwart_instance_up", "1 when an instance is up or late, 0 when down", instance
        )
        self.instance_late = gauge(
            "stalwart_instance_late",
            "1 when an instance has missed 2 heartbeat intervals but is not yet down",
            instance,
        )
        self.ha_leader = gauge(
            "stalwart_ha_leader", "1 for the live holder of an HA role", ["role", "holder"]
        )
        self.outbox_pending = gauge(
            "stalwart_outbox_pending_messages",
            "Messages waiting in this host's store-and-forward spool",
        )
        self.outbox_age = gauge(
            "stalwart_outbox_oldest_age_seconds",
            "Age of the oldest message in this host's spool (0 when empty)",
        )
        self.persistence_lag = gauge(
            "stalwart_persistence_lag_seconds",
            "Seconds between the newest message seen live and the newest in the store",
        )
        self.live_messages = counter(
            "stalwart_dashboard_live_messages", "Messages seen by the dashboard's live feed"
        )
        self.live_dropped = counter(
            "stalwart_dashboard_live_dropped",
            "Live updates dropped because a viewer could not keep up",
        )
        self.live_viewers = gauge("stalwart_dashboard_live_viewers", "Connected live viewers")
        self.bus_up = gauge(
            "stalwart_dashboard_bus_up",
            "1 when the dashboard is on the bus, 0 while it keeps trying to reach it",
        )
        self.label_overflow = gauge(
            "stalwart_dashboard_label_values_refused",
            "Label values counted as 'other' because a label reached its limit of distinct values",
        )
        self.requests = Histogram(
            "stalwart_dashboard_request_seconds",
            "Server time of dashboard requests",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self._seen = {"messages": 0, "dropped": 0}
        self.set_states({})

    def set_states(self, counts: dict[str, int]) -> None:
        for state in _STATES:
            self.deliveries.labels(state=state).set(counts.get(state, 0))

    def set_services(
        self, per_service: dict[str, dict[str, int]], oldest: dict[str, datetime]
    ) -> None:
        """Deliveries by service and state (every state, 0 when none), and backlog age."""
        self.service_deliveries.clear()
        self.oldest_pending.clear()
        cap = LabelCap(self.label_limit)  # services past the limit are summed as "other"
        now = utcnow()
        ages: dict[str, float] = {}
        services = sorted(per_service)
        for service in services:
            label = cap(service)
            for state in _STATES:
                self.service_deliveries.labels(service=label, state=state).inc(
                    per_service[service].get(state, 0)
                )
            age = (now - oldest[service]).total_seconds() if service in oldest else 0.0
            ages[label] = max(ages.get(label, 0.0), age)
        for label, age in ages.items():
            self.oldest_pending.labels(service=label).set(age)
        self.events.know_services(services)

    def set_queues(self, queues: list[QueueInfo]) -> None:
        self.queue_depth.clear()
        self.dead_letters.clear()
        cap = LabelCap(self.label_limit)
        for q in queues:
            name = cap(q.name)
            for status in ("ready", "inflight", "delayed"):
                self.queue_depth.labels(queue=name, status=status).inc(getattr(q, status))
            self.dead_letters.labels(queue=name).inc(q.dead)

    def set_instances(self, instances: list[Instance]) -> None:
        """Instances the store still lists (those silent past ``forget_after`` are gone)."""
        self.heartbeat_age.clear()
        self.instance_up.clear()
        self.instance_late.clear()
        for i in instances[: self.label_limit]:
            labels = {"service": i.service, "site": i.site, "instance": i.instance}
            if i.heartbeat_age is not None:
                self.heartbeat_age.labels(**labels).set(i.heartbeat_age)
            self.instance_up.labels(**labels).set(0 if i.status is Availability.DOWN else 1)
            self.instance_late.labels(**labels).set(1 if i.status is Availability.LATE else 0)

    def set_leaders(self, leaders: dict[str, str]) -> None:
        """role -> live holder."""
        self.ha_leader.clear()
        for role, holder in leaders.items():
            self.ha_leader.labels(role=role, holder=holder).set(1)

    def set_outbox(self, pending: int, oldest: float | None, now: float) -> None:
        self.outbox_pending.set(pending)
        self.outbox_age.set(max(0.0, now - oldest) if oldest is not None and pending else 0.0)

    def set_lag(self, newest_live: datetime | None, newest_stored: datetime | None) -> None:
        if newest_live is None or newest_stored is None:
            self.persistence_lag.set(0.0)
        else:
            self.persistence_lag.set(max(0.0, (newest_live - newest_stored).total_seconds()))

    def set_live(self, seen: int, dropped: int, viewers: int) -> None:
        """Advance the live counters to the hub's running totals."""
        for name, total, counter in (
            ("messages", seen, self.live_messages),
            ("dropped", dropped, self.live_dropped),
        ):
            if total > self._seen[name]:
                counter.inc(total - self._seen[name])
                self._seen[name] = total
        self.live_viewers.set(viewers)
        e = self.events
        self.label_overflow.set(e.topic_cap.refused + e.service_cap.refused + e.name_cap.refused)

    def set_bus(self, reachable: bool) -> None:
        self.bus_up.set(1.0 if reachable else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
