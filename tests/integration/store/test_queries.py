"""The read API: message lists with every filter, pagination, detail with chain, stats."""

from __future__ import annotations

from datetime import timedelta

import pytest
from store_traffic import Traffic

from stalwart.envelope import Envelope, utcnow
from stalwart.messages import Heartbeat, Report, ReportLevel, heartbeat_topic, report_topic
from stalwart.store import Store, queries
from stalwart.store.queries import (
    BadCursor,
    MessageFilter,
    components,
    counts_by_state,
    find_messages,
    get_message,
    list_messages,
    list_reports,
    traffic,
)


async def _ids(store: Store, **filters: object) -> list[str]:
    page = await list_messages(store, MessageFilter.model_validate(filters), limit=100)
    return [m.id for m in page.items]


@pytest.fixture
async def scene(store: Store, traffic: Traffic) -> dict[str, Envelope]:
    """Five messages a second apart, with deliveries and a heartbeat (not listed by default)."""
    t0 = utcnow() - timedelta(minutes=10)
    specs = {
        "a": ("pipeline.process.jao", "ProcessRequest", "dispatcher@jao/h1", "calibrate antenna"),
        "b": ("pipeline.process.eu", "ProcessRequest", "dispatcher@jao/h2", "image cube"),
        "c": ("qa.verify.eu", "VerifyRequest", "pipeline@eu/h3", "flag antenna"),
        "d": ("pipeline", "Ping", "tracker@na/h4", "hello"),
        "e": ("archive.ingest.na.fast", "Ingest", "qa@eu/h5", "products ready"),
    }
    envs = {}
    for i, (key, (topic, kind, sender, words)) in enumerate(specs.items()):
        envs[key] = Envelope.new(
            topic,
            {"note": words},
            kind=kind,
            sender=sender,
            correlation_id="corr-1" if key in "abc" else "corr-2",
            created_at=t0 + timedelta(seconds=i),
        )
    envs["c"] = envs["c"].evolve(causation_id=envs["a"].id)
    envs["e"] = envs["e"].evolve(causation_id=envs["c"].id)
    lifecycle = traffic.lifecycle(
        traffic.step(envs["a"], "pipeline", "consumed"),
        traffic.step(envs["b"], "pipeline", "dead", reason="bad input"),
        traffic.step(envs["c"], "qa", "received"),
        traffic.step(envs["c"], "qa", "consumed"),
        traffic.step(envs["e"], "archive", "failed", reason="disk"),
    )
    beat = Envelope.new(
        heartbeat_topic("qa"),
        Heartbeat(
            service="qa",
            site="eu",
            instance="qa@eu/h5",
            host="h5",
            pid=7,
            started_at=utcnow(),
            uptime=1.0,
            interval=10.0,
        ),
    )
    await store.write([*envs.values(), lifecycle, beat])
    return envs


@pytest.fixture(
    params=[((2_000, 20_000), 0), ((1,), queries.FEW_IN_RANGE)], ids=["scan-plan", "index-plan"]
)
def plan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both query plans: walking the newest messages (even when few are in a prefix's
    index range), and (window 1) the filters' indexes."""
    windows, few = request.param
    monkeypatch.setattr(queries, "SCAN_WINDOWS", windows)
    monkeypatch.setattr(queries, "FEW_IN_RANGE", few)


@pytest.mark.usefixtures("plan")
async def test_every_filter_selects_exactly_its_messages(
    store: Store, scene: dict[str, Envelope]
) -> None:
    # Given the scene; When filtering; Then only the matching messages come back, newest first
    ids = {key: env.id for key, env in scene.items()}

    def want(keys: str) -> list[str]:
        return [ids[k] for k in reversed(keys)]

    assert await _ids(store) == want("abcde")
    assert await _ids(store, topic="pipeline.#") == want("abd")
    assert await _ids(store, topic="pipeline.*.*") == want("ab")
    assert await _ids(store, topic="pipeline.*") == []
    assert await _ids(store, topic="*.*.eu") == want("bc")
    assert await _ids(store, topic="#.fast") == want("e")
    assert await _ids(store, topic="pipeline") == want("d")
    assert await _ids(store, kind="ProcessRequest") == want("ab")
    assert await _ids(store, sender="dispatcher") == want("ab")
    assert await _ids(store, sender="dispatcher@jao") == want("ab")
    assert await _ids(store, sender="dispatcher@jao/h2") == want("b")
    assert await _ids(store, service="pipeline") == want("ab")
    assert await _ids(store, state="dead") == want("b")
    assert await _ids(store, service="qa", state="consumed") == want("c")
    assert await _ids(store, correlation_id="corr-2") == want("de")
    assert await _ids(store, text="antenna") == want("ac")
    assert await _ids(store, text="flag antenna") == want("c")
    assert await _ids(store, text='"quoted" OR') == []
    t0 = scene["a"].created_at
    assert await _ids(store, since=t0 + timedelta(seconds=2)) == want("cde")
    assert await _ids(store, until=t0 + timedelta(seconds=2)) == want("ab")
    assert len(await _ids(store, topic="sys.#")) == 2  # the lifecycle batch and the heartbeat


async def test_a_prefix_with_few_messages_is_read_through_its_index(
    store: Store, scene: dict[str, Envelope], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given topic and sender prefixes that few stored messages fall under (a part's
    # events, sys.ha.#, on a store of pipeline traffic), and a store never walked
    async def walk(*args: object) -> None:
        raise AssertionError("the newest messages were walked for a prefix few match")

    monkeypatch.setattr(queries, "_scan", walk)
    # When listing them; Then they come from the prefix's index range, exactly
    assert await _ids(store, topic="qa.#") == [scene["c"].id]
    assert await _ids(store, topic="sys.ha.#") == []
    assert await _ids(store, sender="qa@eu") == [scene["e"].id]


@pytest.mark.usefixtures("plan")
async def test_pages_follow_each_other_without_gaps_or_repeats(
    store: Store, scene: dict[str, Envelope]
) -> None:
    # Given five messages; When reading two at a time
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = await list_messages(store, MessageFilter(topic="#"), limit=2, after=cursor)
        seen += [m.id for m in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    # Then every message comes exactly once, newest first, and the last page has no cursor
    assert [i for i in seen if i in {e.id for e in scene.values()}] == [
        scene[k].id for k in "edcba"
    ]
    assert cursor is None


async def test_a_forged_cursor_is_refused_clearly(store: Store) -> None:
    with pytest.raises(BadCursor, match="next"):
        await list_messages(store, after="not-a-cursor")


async def test_detail_has_timeline_and_causal_chain(
    store: Store, scene: dict[str, Envelope]
) -> None:
    # When showing the middle message of the chain a -> c -> e
    detail = await get_message(store, scene["c"].id)
    # Then its envelope, its timeline and its chain up and down are there
    assert detail is not None
    assert detail.envelope.body == {"note": "flag antenna"}
    assert [(d.service, d.state) for d in detail.deliveries] == [("qa", "consumed")]
    assert [t.state for t in detail.deliveries[0].transitions] == ["received", "consumed"]
    assert set(detail.deliveries[0].times) == {"received", "consumed"}
    assert [m.id for m in detail.ancestors] == [scene["a"].id]
    assert [n.id for n in detail.descendants.children] == [scene["e"].id]
    assert detail.descendants.children[0].states == {"archive": "failed"}
    # And as the dashboard shows them: one timeline, sent first, and one tree from the root
    timeline = detail.timeline()
    assert [t.state for t in timeline] == ["sent", "received", "consumed"]
    assert timeline[0].attempt is None and timeline[0].instance == scene["c"].sender
    tree = detail.chain()
    assert tree.id == scene["a"].id and [n.id for n in tree.children] == [scene["c"].id]
    assert [n.id for n in tree.children[0].children] == [scene["e"].id]
    assert await get_message(store, "no-such-id") is None


async def test_reports_filter_by_minimum_level_and_source(store: Store) -> None:
    # Given an info and an error report from two sources
    def report(level: ReportLevel, source: str) -> Envelope:
        return Envelope.new(report_topic(level), Report(level=level, source=source, text="x"))

    await store.write([report(ReportLevel.INFO, "qa"), report(ReportLevel.ERROR, "pipeline")])
    # Then a warning minimum gives the error only, and a source filter its own reports
    assert [r.source for r in await list_reports(store, level="warning")] == ["pipeline"]
    assert [r.level for r in await list_reports(store, source="qa")] == ["info"]
    assert len(await list_reports(store)) == 2


async def test_components_age_into_late_then_down(store: Store, scene: dict[str, Envelope]) -> None:
    # Given a heartbeat with a 10 s interval, seen now
    (component,) = await components(store)
    assert component.availability == "up"
    # When 25 s and then 60 s have passed
    later = component.last_heartbeat + timedelta(seconds=25)
    assert (await components(store, now=later))[0].availability == "late"
    much_later = component.last_heartbeat + timedelta(seconds=60)
    # Then it is late, then down
    assert (await components(store, now=much_later))[0].availability == "down"


async def test_traffic_counts_topics_and_edges_per_bucket(
    store: Store, scene: dict[str, Envelope]
) -> None:
    # When asking for the last hour in one-minute buckets
    result = await traffic(store, timedelta(hours=1), timedelta(minutes=1))
    # Then the scene's topics and sender->service edges are counted once each
    assert result.window == 3600 and result.bucket == 60
    series = {s.topic: s.counts for s in result.series}
    assert all(len(c) == 60 for c in series.values())
    assert sum(series["pipeline.process.jao"]) == 1
    edges = {(e.source, e.target): e.count for e in result.edges}
    assert edges == {("dispatcher", "pipeline"): 2, ("pipeline", "qa"): 1, ("qa", "archive"): 1}
    # And their rates are per second over the window
    assert {e.rate for e in result.edges} == {2 / 3600, 1 / 3600}


async def test_counts_by_state_per_service(store: Store, scene: dict[str, Envelope]) -> None:
    assert await counts_by_state(store) == {
        "archive": {"failed": 1},
        "pipeline": {"consumed": 1, "dead": 1},
        "qa": {"consumed": 1},
    }


@pytest.mark.usefixtures("plan")
async def test_ever_state_and_min_attempts_select_by_delivery_history(
    store: Store, traffic: Traffic
) -> None:
    # Given a message that failed then was consumed, one still failing on its third
    # attempt, one consumed at once, and one that failed at another service
    t0 = utcnow() - timedelta(minutes=5)
    recovered, failing, clean, elsewhere = (
        traffic.message(created_at=t0 + timedelta(seconds=i)) for i in range(4)
    )
    lifecycle = traffic.lifecycle(
        traffic.step(recovered, "qa", "failed", attempt=1),
        traffic.step(recovered, "qa", "consumed", attempt=2),
        traffic.step(failing, "qa", "failed", attempt=3),
        traffic.step(clean, "qa", "consumed"),
        traffic.step(elsewhere, "archive", "failed", attempt=2),
        traffic.step(elsewhere, "qa", "consumed"),
    )
    await store.write([recovered, failing, clean, elsewhere, lifecycle])

    def newest_first(*envs: Envelope) -> list[str]:
        return [e.id for e in envs]

    # Then --ever-state finds them whatever their state now, per service if given
    assert await _ids(store, ever_state="failed") == newest_first(elsewhere, failing, recovered)
    assert await _ids(store, ever_state="failed", service="qa") == newest_first(failing, recovered)
    # And every delivery condition holds for the same delivery
    assert await _ids(store, ever_state="failed", state="consumed") == newest_first(recovered)
    assert await _ids(store, ever_state="consumed") == newest_first(elsewhere, clean, recovered)
    # And --min-attempts counts the attempts of one delivery
    assert await _ids(store, min_attempts=2) == newest_first(elsewhere, failing, recovered)
    assert await _ids(store, min_attempts=3) == newest_first(failing)
    assert await _ids(store, min_attempts=2, service="qa") == newest_first(failing, recovered)
    assert await _ids(store, min_attempts=1, service="archive") == newest_first(elsewhere)


async def test_messages_are_found_by_the_start_or_end_of_their_id(
    store: Store, scene: dict[str, Envelope]
) -> None:
    # Given the scene; When looking for the end of an id (what `tail` prints)
    e = scene["e"]
    assert [m.id for m in await find_messages(store, e.id[-8:])] == [e.id]
    # Then also its start finds it, among the others of the same minute, at most `limit`
    alike = await find_messages(store, e.id[:8], limit=3)
    assert len(alike) == 3 and all(m.id.startswith(e.id[:8]) for m in alike)
    assert e.id in {m.id for m in await find_messages(store, e.id[:8], limit=100)}
    # And LIKE's wildcards are plain characters
    assert await find_messages(store, "%") == []
    assert await find_messages(store, "_") == []
