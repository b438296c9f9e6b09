"""/metrics by Prometheus conventions, checked by promtool, and the docs' alert
rules and Grafana board checked against what /metrics really exports."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dashboard_system import System, dashboard_config, running_service, running_system
from prometheus_client.parser import text_string_to_metric_families

from stalwart.bus.outbox._spool import Spool
from stalwart.config import Settings
from stalwart.envelope import DeliveryState, Envelope
from stalwart.ha.lease import Lease
from stalwart.service import Context, Service
from waiting import until

DOCS = Path(__file__).parents[3] / "docs"
RULES = DOCS / "prometheus-rules.yml"
BOARD = DOCS / "grafana-dashboard.json"
RULE_TESTS = "alert_rules_test.yml"  # promtool's unit tests of the rules, next to this file
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: bash scripts/setup.sh test installs it"
)
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count")}


def _service(name: str, fail: bool = False) -> Service:
    svc = Service(name, site="eu", heartbeat_interval=1.0, max_attempts=1)

    @svc.handler(f"{name}.*")
    async def handle(ctx: Context, body: Any) -> None:
        if fail:
            raise RuntimeError("cannot")

    return svc


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _exported_names(text: str) -> set[str]:
    """Every series name the text declares, with the suffixes of its type."""
    names = set()
    for family in text_string_to_metric_families(text):
        suffixes = _SUFFIXES.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bstalwart_[a-z_]+\b", expr))


def _value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return sum(v for lbl, v in samples.get(name, []) if labels.items() <= lbl.items())


async def _scrape_after_traffic(system: System) -> str:
    async with (
        running_service(system, _service("qa")),
        running_service(system, _service("broken", fail=True)),
    ):
        await system.publish(
            Envelope.new("qa.work", {"n": 1}),
            Envelope.new("broken.work", {"n": 2}),
            Envelope.new("sys.reply.qa.0a1b2c3d", {"n": 3}),
            Envelope.new("sys.reply.qa.4e5f6a7b", {"n": 4}),
        )

        async def scraped() -> str | None:
            text = (await system.client.get("/metrics")).text
            s = _samples(text)
            done = _value(s, "stalwart_service_processed_total", service="qa") >= 1
            dead = _value(s, "stalwart_service_dead_total", service="broken") >= 1
            stored = _value(s, "stalwart_deliveries", state="consumed") >= 1
            return text if done and dead and stored else None

        return await until(scraped, 30, "processed and dead counts in /metrics")


@needs_promtool
async def test_metrics_pass_promtool_and_follow_conventions(system: System) -> None:
    text = await _scrape_after_traffic(system)
    # Then promtool finds nothing to complain about
    checked = await asyncio.to_thread(
        subprocess.run,
        [str(PROMTOOL), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    s = _samples(text)
    # Running totals are counters, and there are no pre-averaged rates
    for name in (
        "stalwart_dashboard_live_dropped",
        "stalwart_topic_messages",
        "stalwart_service_processed",
        "stalwart_service_failed",
        "stalwart_service_retried",
        "stalwart_service_dead",
        "stalwart_watchdog_restarts",
        "stalwart_ha_leader_changes",
        "stalwart_ha_failovers",
        "stalwart_integrity_events",
    ):
        assert families.get(name) == "counter", name
    assert not any("rate" in name for name in families)
    assert families["stalwart_handler_seconds"] == "histogram"
    # Every delivery state has a series, 0 when never seen
    states = {lbl["state"]: v for lbl, v in s["stalwart_deliveries"]}
    assert set(states) == {st.value for st in DeliveryState}
    assert states["rejected"] == 0 and states["consumed"] >= 1
    per_service = {(lbl["service"], lbl["state"]) for lbl, _ in s["stalwart_service_deliveries"]}
    assert {("qa", st.value) for st in DeliveryState} <= per_service
    # Up is 0 or 1, never in between
    assert s["stalwart_instance_up"] and {v for _, v in s["stalwart_instance_up"]} <= {0.0, 1.0}
    # Failures and handler time are counted per service
    assert _value(s, "stalwart_service_failed_total", service="broken") >= 1
    assert _value(s, "stalwart_handler_seconds_count", service="qa") >= 1
    # Reply topics are one label value, not one per instance
    topics = {lbl["topic"] for lbl, _ in s["stalwart_topic_messages_total"]}
    assert "sys.reply.*" in topics and not any(t.startswith("sys.reply.qa") for t in topics)
    # Integrity events have their series from the start, and so has the backlog age
    assert _value(s, "stalwart_integrity_events_total", event="corrupt") == 0
    assert "stalwart_oldest_pending_age_seconds" in families


@needs_promtool
@pytest.mark.parametrize(
    "command",
    [("check", "rules", str(RULES)), ("test", "rules", str(Path(__file__).with_name(RULE_TESTS)))],
    ids=["check", "each alert fires when it should"],
)
def test_the_alert_rules_pass_promtool(command: tuple[str, ...]) -> None:
    checked = subprocess.run([str(PROMTOOL), *command], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


async def test_rules_and_grafana_name_only_metrics_that_exist(system: System) -> None:
    exported = _exported_names(await _scrape_after_traffic(system))
    # Given the alert rules and every panel of the Grafana board
    rules = RULES.read_text(encoding="utf-8")
    board = json.loads(BOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    alert_exprs = re.findall(r"^\s+expr: (.+)$", rules, flags=re.MULTILINE)
    assert len(board["panels"]) >= 10 and len(alert_exprs) >= 5
    # Then each expression names at least one metric, and only metrics that exist
    for expr in exprs + alert_exprs:
        names = _metric_names(expr)
        assert names, expr
        assert names <= exported, (expr, names - exported)
    # And the rules cover what the operators asked for
    for alert in (
        "ServiceDown",
        "DeadLettersGrowing",
        "BacklogOld",
        "HaFailover",
        "IntegrityError",
    ):
        assert f"alert: Stalwart{alert}" in rules


async def test_a_stuck_handler_shows_as_the_age_of_the_oldest_unfinished(system: System) -> None:
    # Given a service whose handler never finishes
    release = asyncio.Event()
    stuck = Service("stuck", site="eu", heartbeat_interval=1.0)

    @stuck.handler("stuck.*", timeout=60)
    async def handle(ctx: Context, body: Any) -> None:
        await release.wait()

    async with running_service(system, stuck):
        await system.publish(Envelope.new("stuck.work", {"n": 1}))

        # When /metrics is scraped, Then the received message's age is its backlog age
        async def aged() -> float | None:
            s = _samples((await system.client.get("/metrics")).text)
            age = _value(s, "stalwart_oldest_pending_age_seconds", service="stuck")
            return age or None

        try:
            assert await until(aged, 30, "a backlog age for stuck") > 0
        finally:
            release.set()


async def test_the_current_ha_leader_is_a_series(system: System) -> None:
    # Given a role held in the store's HA lease table
    lease = Lease(system.store.engine, "dispatcher", ttl=30.0, holder="dispatch@eu/1")
    assert await lease.acquire()
    # When /metrics is scraped, Then the holder is the role's leader
    s = _samples((await system.client.get("/metrics")).text)
    assert s["stalwart_ha_leader"] == [({"role": "dispatcher", "holder": "dispatch@eu/1"}, 1.0)]


def _spool_two(path: Path) -> None:
    spool = Spool(path, bus="amqp://guest:***@rabbit:5672/")
    spool.append([("m1", "work.a", b"{}"), ("m2", "work.b", b"{}")])
    spool.close()


async def test_the_outbox_of_this_host_is_a_series(
    sqlite_bus_url: str, sqlite_store_url: str, tmp_path: Path
) -> None:
    spool_path = tmp_path / "outbox.db"
    settings = Settings.model_validate({"bus": {"outbox": str(spool_path)}})
    async with running_system(
        sqlite_bus_url, sqlite_store_url, dashboard_config(), settings=settings
    ) as system:
        # Given no spool yet, When scraped, Then nothing waits and no spool is created
        s = _samples((await system.client.get("/metrics")).text)
        assert s["stalwart_outbox_pending_messages"] == [({}, 0.0)]
        assert not await asyncio.to_thread(spool_path.exists)
        # Given two messages spooled for a broker that is away
        await asyncio.to_thread(_spool_two, spool_path)
        s = _samples((await system.client.get("/metrics")).text)
    # Then /metrics counts them, and says how long the oldest has waited
    assert s["stalwart_outbox_pending_messages"] == [({}, 2.0)]
    assert s["stalwart_outbox_oldest_age_seconds"][0][1] >= 0.0
