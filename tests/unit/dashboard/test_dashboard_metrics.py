"""The dashboard's metrics: counters from bus events, bounded labels, 0/1 availability."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from stalwart.config import SecuritySettings
from stalwart.dashboard.labels import OTHER
from stalwart.dashboard.metrics import DashboardMetrics
from stalwart.dashboard.models import Availability, Instance
from stalwart.envelope import DeliveryState, Envelope, Transition, utcnow
from stalwart.events import (
    HaKind,
    IntegrityEvent,
    IntegrityKind,
    LeaseEvent,
    WatchdogEvent,
    WatchdogKind,
    event_envelope,
)
from stalwart.messages import LifecycleBatch
from stalwart.service import TokenAuthority

SECRET = "k" * 16 + "0123456789abcdef"


def _series(metrics: DashboardMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = metrics.render().decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    }


def test_reply_topics_are_one_label_value_and_topics_are_capped() -> None:
    metrics = DashboardMetrics(label_limit=5)
    for n in range(3):
        metrics.events.observe(Envelope.new(f"sys.reply.qa.{n:08x}", {}))
    for n in range(10):
        metrics.events.observe(Envelope.new(f"forged.topic.{n}", {}))
    topics = {
        dict(k)["topic"]: v for k, v in _series(metrics, "stalwart_topic_messages_total").items()
    }
    assert topics["sys.reply.*"] == 3
    assert len(topics) == 6 and topics[OTHER] == 6  # 5 kept, the rest counted as other
    metrics.set_live(0, 0, 0)
    assert _series(metrics, "stalwart_dashboard_label_values_refused")[()] == 6


def test_forged_program_names_do_not_create_series_without_bound() -> None:
    metrics = DashboardMetrics(label_limit=3)
    for n in range(50):
        body = {"event": "restarted", "program": f"forged-{n}"}
        metrics.events.observe(Envelope.new("sys.watchdog.restarted", body))
    restarts = _series(metrics, "stalwart_watchdog_restarts_total")
    assert len(restarts) == 4 and sum(restarts.values()) == 50


def _transition(state: DeliveryState, at_offset: float, attempt: int = 1) -> Transition:
    start = utcnow().replace(microsecond=0)
    return Transition(
        message_id="m1",
        service="qa",
        state=state,
        at=start + timedelta(seconds=at_offset),
        attempt=attempt,
    )


def test_life_cycle_batches_give_outcome_counters_and_handler_time() -> None:
    # Given a delivery failing once, then received again and consumed 0.25 s later
    metrics = DashboardMetrics()
    batch = LifecycleBatch(
        transitions=[
            _transition(DeliveryState.RECEIVED, 0.0),
            _transition(DeliveryState.FAILED, 1.0),
            _transition(DeliveryState.RECEIVED, 2.0, attempt=2),
            _transition(DeliveryState.CONSUMED, 2.25, attempt=2),
        ]
    )
    metrics.events.observe(Envelope.new("sys.lifecycle", batch))
    # Then each outcome is counted once, and both attempts are timed
    for name, want in (("processed", 1), ("failed", 1), ("retried", 1), ("dead", 0)):
        got = _series(metrics, f"stalwart_service_{name}_total").get((("service", "qa"),), 0)
        assert got == want, name
    assert _series(metrics, "stalwart_handler_seconds_count")[(("service", "qa"),)] == 2
    assert _series(metrics, "stalwart_handler_seconds_sum")[(("service", "qa"),)] == 1.25


def test_known_services_start_at_zero_and_every_state_has_a_series() -> None:
    metrics = DashboardMetrics()
    metrics.set_services({"qa": {"consumed": 4}}, {})
    assert _series(metrics, "stalwart_service_dead_total")[(("service", "qa"),)] == 0
    states = _series(metrics, "stalwart_service_deliveries")
    assert len(states) == len(DeliveryState)
    assert states[(("service", "qa"), ("state", "consumed"))] == 4
    assert states[(("service", "qa"), ("state", "dead"))] == 0


def _instance(name: str, status: Availability) -> Instance:
    return Instance(service="qa", site="eu", instance=name, status=status, heartbeat_age=1.0)


def test_up_is_0_or_1_late_is_its_own_series_and_forgotten_instances_go() -> None:
    metrics = DashboardMetrics()
    metrics.set_instances(
        [
            _instance("a", Availability.UP),
            _instance("b", Availability.LATE),
            _instance("c", Availability.DOWN),
        ]
    )
    up = {dict(k)["instance"]: v for k, v in _series(metrics, "stalwart_instance_up").items()}
    late = {dict(k)["instance"]: v for k, v in _series(metrics, "stalwart_instance_late").items()}
    assert up == {"a": 1, "b": 1, "c": 0} and late == {"a": 0, "b": 1, "c": 0}
    # When the store no longer lists c (forgotten after [store] forget_after)
    metrics.set_instances([_instance("a", Availability.UP)])
    assert {dict(k)["instance"] for k in _series(metrics, "stalwart_instance_up")} == {"a"}


def test_live_drops_are_a_counter_that_only_advances() -> None:
    metrics = DashboardMetrics()
    metrics.set_live(seen=10, dropped=3, viewers=1)
    metrics.set_live(seen=12, dropped=5, viewers=1)
    assert _series(metrics, "stalwart_dashboard_live_dropped_total")[()] == 5
    assert _series(metrics, "stalwart_dashboard_live_messages_total")[()] == 12


def test_system_messages_without_a_valid_token_are_counted_and_their_sender_marked() -> None:
    authority = TokenAuthority(SecuritySettings(secret=SECRET))
    metrics = DashboardMetrics(authority)
    token = authority.issue("qa", [], ttl=60)
    good = Envelope.new("sys.heartbeat.qa", {}, sender="qa@eu/1", token=token)
    forged = Envelope.new("sys.heartbeat.qa", {}, sender="qa@eu/2")
    wrong = Envelope.new("sys.watchdog.restarted", {}, sender="wd@eu/1", token="eyJ.not.valid")
    for envelope in (good, forged, wrong):
        metrics.events.observe(envelope)
    counts = {
        dict(k)["family"]: v
        for k, v in _series(metrics, "stalwart_unauthenticated_messages_total").items()
    }
    assert counts["heartbeat"] == 1 and counts["watchdog"] == 1 and counts["lifecycle"] == 0
    assert not metrics.events.unverified("qa@eu/1")
    assert metrics.events.unverified("qa@eu/2") and metrics.events.unverified("wd@eu/1")


def test_without_a_key_nothing_is_judged() -> None:
    metrics = DashboardMetrics(TokenAuthority(SecuritySettings()))
    metrics.events.observe(Envelope.new("sys.heartbeat.qa", {}, sender="qa@eu/1"))
    assert not metrics.events.unverified("qa@eu/1")
    assert sum(_series(metrics, "stalwart_unauthenticated_messages_total").values()) == 0


def test_watchdog_events_signed_with_its_token_are_verified() -> None:
    authority = TokenAuthority(SecuritySettings(secret=SECRET))
    metrics = DashboardMetrics(authority)
    event = WatchdogEvent(event=WatchdogKind.RESTARTED, program="pipeline")
    token = authority.issue("watchdog", [], ttl=60)
    metrics.events.observe(event_envelope(event, "watchdog@eu/1", token))
    metrics.events.observe(event_envelope(event, "watchdog@eu/2"))
    assert not metrics.events.unverified("watchdog@eu/1")
    assert metrics.events.unverified("watchdog@eu/2")
    assert _series(metrics, "stalwart_watchdog_restarts_total")[(("program", "pipeline"),)] == 2


def test_ha_and_integrity_events_are_counted_and_judged_by_their_token() -> None:
    # Given a key, and HA and integrity events, one of each signed and one forged
    authority = TokenAuthority(SecuritySettings(secret=SECRET))
    metrics = DashboardMetrics(authority)
    token = authority.issue("ha", [], ttl=60)
    lease = LeaseEvent(event=HaKind.ACQUIRED, role="scheduler", holder="ha@eu/1")
    checked = IntegrityEvent(event=IntegrityKind.VERIFIED, site="eu", name="ous-1")
    # When the live feed sees them
    metrics.events.observe(event_envelope(lease, "ha@eu/1", token))
    metrics.events.observe(event_envelope(checked, "integrity@eu/1"))
    # Then they count in their own series, and only the unsigned sender is marked
    assert _series(metrics, "stalwart_ha_leader_changes_total")[(("role", "scheduler"),)] == 1
    assert _series(metrics, "stalwart_integrity_events_total")[(("event", "verified"),)] == 1
    assert not metrics.events.unverified("ha@eu/1")
    assert metrics.events.unverified("integrity@eu/1")
    unauthenticated = {
        dict(k)["family"]: v
        for k, v in _series(metrics, "stalwart_unauthenticated_messages_total").items()
    }
    assert unauthenticated == {
        "heartbeat": 0,
        "lifecycle": 0,
        "ha": 0,
        "integrity": 1,
        "watchdog": 0,
    }
