"""Counters and histograms from what the live feed sees on the bus.

Every message is counted by topic; life-cycle batches give each service's
processed, failed, retried and dead counts and the handler time (received ->
consumed, failed, dead or rejected, per attempt); watchdog, HA and integrity
events give restarts, leader changes, failovers and integrity outcomes.
These are counters since the dashboard started, for ``rate()`` and
``increase()``. ``sys.*`` messages whose token does not verify (when
``[security]`` has a key) are counted, and their senders remembered, so the
dashboard can mark what an unauthenticated publisher claims.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Histogram

from stalwart.dashboard.labels import LabelCap, topic_label
from stalwart.envelope import DeliveryState, Envelope
from stalwart.errors import NotAuthorised
from stalwart.events import (
    FAMILIES,
    Failover,
    HaKind,
    IntegrityEvent,
    IntegrityKind,
    LeaseEvent,
    SysEvent,
    WatchdogEvent,
    WatchdogKind,
    decode_event,
)
from stalwart.messages import LifecycleBatch
from stalwart.service import TokenAuthority

__all__ = ["SYSTEM_FAMILIES", "EventMetrics"]

# sys.* topics whose publishers must be stalwart's own parts, by family; every
# part signs them with its token, so each is judged.
SYSTEM_FAMILIES = ("heartbeat", "lifecycle", *FAMILIES)
_FINAL = frozenset(
    {DeliveryState.CONSUMED, DeliveryState.FAILED, DeliveryState.DEAD, DeliveryState.REJECTED}
)
_HANDLER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


def _family(topic: str) -> str | None:
    parts = topic.split(".", 2)
    if parts[0] != "sys" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in SYSTEM_FAMILIES else None


class EventMetrics:
    """Turns live envelopes into the dashboard registry's counters."""

    def __init__(
        self,
        registry: CollectorRegistry,
        authority: TokenAuthority | None = None,
        label_limit: int = 500,
        max_pending: int = 100_000,
    ) -> None:
        r = registry
        self.authority = authority if authority is not None and authority.configured else None
        self.topic_cap, self.service_cap, self.name_cap = (LabelCap(label_limit) for _ in range(3))
        self.max_pending = max_pending
        self._received: OrderedDict[tuple[str, str, int], datetime] = OrderedDict()
        self.verdicts: OrderedDict[str, bool] = OrderedDict()  # sender -> last sys.* verified
        counter = partial(Counter, registry=r)
        self.topics = counter(
            "stalwart_topic_messages",
            "Messages seen on the bus by topic (reply topics grouped as sys.reply.*)",
            ["topic"],
        )
        self.service: dict[str, Counter] = {
            name: counter(f"stalwart_service_{name}", text, ["service"])
            for name, text in (
                ("processed", "Deliveries a service consumed"),
                ("failed", "Handler attempts that failed (each attempt counts)"),
                ("retried", "Deliveries received again after a failed attempt"),
                ("dead", "Deliveries a service dead-lettered"),
            )
        }
        self.handler = Histogram(
            "stalwart_handler_seconds",
            "Time from a delivery received to its outcome (consumed, failed, dead, rejected)",
            ["service"],
            buckets=_HANDLER_BUCKETS,
            registry=r,
        )
        self.restarts = counter(
            "stalwart_watchdog_restarts", "Programs restarted by the watchdog", ["program"]
        )
        self.leader_changes = counter(
            "stalwart_ha_leader_changes", "Roles taken by a new holder (sys.ha.acquired)", ["role"]
        )
        self.failovers = counter(
            "stalwart_ha_failovers",
            "Health monitors switching their clients to another URL (sys.ha.failover)",
            ["monitor"],
        )
        self.integrity = counter(
            "stalwart_integrity_events",
            "Integrity outcomes by event (failed, corrupt, missing, dark are errors)",
            ["event"],
        )
        for kind in IntegrityKind:
            self.integrity.labels(event=kind.value)
        self.unauthenticated = counter(
            "stalwart_unauthenticated_messages",
            "sys.heartbeat, sys.lifecycle and sys.watchdog messages whose token did not verify",
            ["family"],
        )
        for family in SYSTEM_FAMILIES:
            self.unauthenticated.labels(family=family)

    def know_services(self, services: list[str]) -> None:
        """Start each service's counters at 0, so that the first increase is seen."""
        for service in services:
            label = self.service_cap(service)
            for counter in self.service.values():
                counter.labels(service=label)
            self.handler.labels(service=label)

    def unverified(self, sender: str) -> bool:
        """True when ``sender``'s latest sys.* message did not carry a valid token."""
        return self.verdicts.get(sender) is False

    def observe(self, envelope: Envelope) -> None:
        topic = envelope.topic
        self.topics.labels(topic=self.topic_cap(topic_label(topic))).inc()
        family = _family(topic)
        if family is None:
            return
        self._check_token(envelope, family)
        try:
            if family == "lifecycle":
                self._lifecycle(LifecycleBatch.model_validate(envelope.body))
            elif family in FAMILIES:
                self._event(decode_event(topic, envelope.body))
        except ValueError:  # pydantic's ValidationError is one
            pass  # a malformed system message: counted by topic, nothing else

    def _check_token(self, envelope: Envelope, family: str) -> None:
        if self.authority is None or family not in SYSTEM_FAMILIES:
            return
        try:
            self.authority.verify(envelope.token, ())
            verified = True
        except NotAuthorised:
            verified = False
            self.unauthenticated.labels(family=family).inc()
        self.verdicts.pop(envelope.sender, None)
        self.verdicts[envelope.sender] = verified
        while len(self.verdicts) > self.max_pending:
            self.verdicts.popitem(last=False)

    def _lifecycle(self, batch: LifecycleBatch) -> None:
        for t in batch.transitions:
            service = self.service_cap(t.service)
            key = (t.message_id, t.service, t.attempt)
            if t.state is DeliveryState.RECEIVED:
                if t.attempt > 1:
                    self.service["retried"].labels(service=service).inc()
                self._received[key] = t.at
                while len(self._received) > self.max_pending:
                    self._received.popitem(last=False)
                continue
            if t.state is DeliveryState.CONSUMED:
                self.service["processed"].labels(service=service).inc()
            elif t.state is DeliveryState.FAILED:
                self.service["failed"].labels(service=service).inc()
            elif t.state is DeliveryState.DEAD:
                self.service["dead"].labels(service=service).inc()
            started = self._received.pop(key, None) if t.state in _FINAL else None
            if started is not None:
                seconds = (t.at - started).total_seconds()
                self.handler.labels(service=service).observe(max(0.0, seconds))

    def _event(self, event: SysEvent) -> None:
        if isinstance(event, WatchdogEvent) and event.event is WatchdogKind.RESTARTED:
            self.restarts.labels(program=self.name_cap(event.program)).inc()
        elif isinstance(event, LeaseEvent) and event.event is HaKind.ACQUIRED:
            self.leader_changes.labels(role=self.name_cap(event.role)).inc()
        elif isinstance(event, Failover):
            self.failovers.labels(monitor=self.name_cap(event.monitor)).inc()
        elif isinstance(event, IntegrityEvent):
            self.integrity.labels(event=event.event.value).inc()
