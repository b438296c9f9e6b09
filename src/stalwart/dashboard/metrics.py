"""Prometheus metrics at ``/metrics`` from the dashboard's own registry.

Nothing is registered at import time: :class:`DashboardMetrics` owns a
``CollectorRegistry``. Gauges that describe the system (states, rates,
queues, heartbeats, persistence lag) are refreshed from the store and the bus
at scrape time; counters of the dashboard itself (live traffic, drops,
requests) are updated as things happen.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stalwart.dashboard.models import Instance, QueueInfo

__all__ = ["CONTENT_TYPE", "DashboardMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DashboardMetrics:
    """The metrics of one dashboard app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deliveries = Gauge(
            "stalwart_deliveries", "Deliveries in the store by state", ["state"], registry=r
        )
        self.topic_rate = Gauge(
            "stalwart_topic_rate_per_second",
            "Messages per second by topic, averaged over the traffic window",
            ["topic"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "stalwart_queue_depth", "Messages in a service queue", ["queue", "status"], registry=r
        )
        self.dead_letters = Gauge(
            "stalwart_dead_letters", "Dead letters of a service queue", ["queue"], registry=r
        )
        self.heartbeat_age = Gauge(
            "stalwart_heartbeat_age_seconds",
            "Seconds since an instance's last heartbeat",
            ["service", "site", "instance"],
            registry=r,
        )
        self.instance_up = Gauge(
            "stalwart_instance_up",
            "1 when an instance is up, 0.5 late, 0 down",
            ["service", "site", "instance"],
            registry=r,
        )
        self.persistence_lag = Gauge(
            "stalwart_persistence_lag_seconds",
            "Seconds between the newest message seen live and the newest in the store",
            registry=r,
        )
        self.live_messages = Counter(
            "stalwart_dashboard_live_messages",
            "Messages seen by the dashboard's live feed, by topic",
            ["topic"],
            registry=r,
        )
        self.live_dropped = Gauge(
            "stalwart_dashboard_live_dropped",
            "Live updates dropped because a viewer could not keep up (total since start)",
            registry=r,
        )
        self.live_viewers = Gauge(
            "stalwart_dashboard_live_viewers", "Connected live viewers", registry=r
        )
        self.bus_up = Gauge(
            "stalwart_dashboard_bus_up",
            "1 when the dashboard is on the bus, 0 while it keeps trying to reach it",
            registry=r,
        )
        self.requests = Histogram(
            "stalwart_dashboard_request_seconds",
            "Server time of dashboard requests",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self._live_seen: dict[str, int] = {}

    def set_states(self, counts: dict[str, int]) -> None:
        self.deliveries.clear()
        for state, count in counts.items():
            self.deliveries.labels(state=state).set(count)

    def set_rates(self, rates: dict[str, float]) -> None:
        self.topic_rate.clear()
        for topic, rate in rates.items():
            self.topic_rate.labels(topic=topic).set(rate)

    def set_queues(self, queues: list[QueueInfo]) -> None:
        self.queue_depth.clear()
        self.dead_letters.clear()
        for q in queues:
            for status in ("ready", "inflight", "delayed"):
                self.queue_depth.labels(queue=q.name, status=status).set(getattr(q, status))
            self.dead_letters.labels(queue=q.name).set(q.dead)

    def set_instances(self, instances: list[Instance]) -> None:
        self.heartbeat_age.clear()
        self.instance_up.clear()
        level = {"up": 1.0, "late": 0.5, "down": 0.0}
        for i in instances:
            labels = {"service": i.service, "site": i.site, "instance": i.instance}
            if i.heartbeat_age is not None:
                self.heartbeat_age.labels(**labels).set(i.heartbeat_age)
            self.instance_up.labels(**labels).set(level[i.status.value])

    def set_lag(self, newest_live: datetime | None, newest_stored: datetime | None) -> None:
        if newest_live is None or newest_stored is None:
            self.persistence_lag.set(0.0)
        else:
            self.persistence_lag.set(max(0.0, (newest_live - newest_stored).total_seconds()))

    def set_live(self, topic_counts: dict[str, int], dropped: int, viewers: int) -> None:
        """Advance the live counters to the hub's running totals."""
        for topic, total in topic_counts.items():
            delta = total - self._live_seen.get(topic, 0)
            if delta > 0:
                self.live_messages.labels(topic=topic).inc(delta)
                self._live_seen[topic] = total
        self.live_dropped.set(dropped)
        self.live_viewers.set(viewers)

    def set_bus(self, reachable: bool) -> None:
        self.bus_up.set(1.0 if reachable else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
