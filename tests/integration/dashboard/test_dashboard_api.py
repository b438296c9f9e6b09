"""The JSON API and pages against the embedded bus, a SQLite store and real services."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import httpx
from dashboard_system import (
    System,
    dashboard_config,
    logged_in_csrf,
    running_service,
    running_system,
)

from stalwart.config import Settings
from stalwart.dashboard import create_app
from stalwart.dashboard.storesource import StoreSource
from stalwart.envelope import Envelope, utcnow
from stalwart.messages import Report, report_topic
from stalwart.service import Context, Service
from stalwart.store import Store
from waiting import until


def _qa(name: str = "qa", fail: bool = False) -> Service:
    svc = Service(name, site="eu", heartbeat_interval=1.0, max_attempts=1)

    @svc.handler("work.*")
    async def handle(ctx: Context, body: Any) -> None:
        if fail:
            raise RuntimeError("cannot process <this>")
        await ctx.publish("work.done.verdict", {"ok": True}, kind="Verdict")

    return svc


async def _json(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_overview_shows_a_running_service_its_queue_and_rates(system: System) -> None:
    # Given a running qa service at site eu that handled a few messages
    async with running_service(system, _qa()):
        units = [Envelope.new("work.unit", {"n": i}, sender="disp@jao/1") for i in range(5)]
        await system.publish(*units)

        async def consumed() -> Any:
            data = await _json(system.client, "/api/overview")
            sites = {s["site"]: s for s in data["sites"]}
            ok = "eu" in sites and data["counts_by_state"].get("consumed", 0) >= 5
            ok = ok and "work.unit" in data["rates"]  # aggregates are cached for a second
            return data if ok else None

        # When the overview is asked
        data = await until(consumed, 30, "the overview to show qa's work")
        # Then qa is up at eu, its queue is listed, and the topic has a rate
        (svc,) = [s for s in data["sites"][0]["services"] if s["name"] == "qa"]
        assert svc["status"] == "up" and svc["instances"][0]["status"] == "up"
        assert "qa" in [q["name"] for q in data["queues"]]
        assert data["rates"]["work.unit"] > 0
        page = await system.client.get("/")
        assert 'data-service="qa"' in page.text
        assert " msg/s in</span>" in page.text and ">0 msg/s in<" not in page.text


async def test_every_message_filter_selects_exactly_its_messages(system: System) -> None:
    # Given messages differing in one attribute each, some consumed by qa
    async with running_service(system, _qa()):
        t0 = utcnow()
        a = Envelope.new("work.alpha", {"text": "calibration failed"}, kind="Cal", sender="a@x/1")
        b = Envelope.new(
            "pipe.beta", {"text": "all good"}, kind="Step", sender="b@y/1", correlation_id="corr-1"
        )
        await system.publish(a, b)
        await system.stored(a.id)
        await system.stored(b.id)

        async def consumed() -> bool:
            page = await _json(system.client, "/api/messages", service="qa", state="consumed")
            return a.id in [m["id"] for m in page["items"]]

        await until(consumed, 30, "qa to consume work.alpha")

    async def ids(**params: Any) -> set[str]:
        page = await _json(system.client, "/api/messages", limit=100, **params)
        return {m["id"] for m in page["items"]} & {a.id, b.id}

    # Then each filter keeps only the matching message
    assert await ids() == {a.id, b.id}
    assert await ids(topic="work.*") == {a.id}
    assert await ids(topic="#") == {a.id, b.id}
    assert await ids(kind="Step") == {b.id}
    assert await ids(sender="a@x") == {a.id}
    assert await ids(service="qa") == {a.id}
    assert await ids(state="consumed") == {a.id}
    assert await ids(correlation="corr-1") == {b.id}
    assert await ids(text="calibration") == {a.id}
    assert await ids(since=(t0 - timedelta(minutes=1)).isoformat()) == {a.id, b.id}
    assert await ids(until=(t0 - timedelta(minutes=1)).isoformat()) == set()
    # And the page's filter form gives the same answer
    page = await system.client.get("/messages", params={"kind": "Cal"})
    assert a.id in page.text and b.id not in page.text


async def test_keyset_paging_visits_every_message_once(system: System) -> None:
    # Given 25 messages
    sent = [Envelope.new("page.test", {"i": i}) for i in range(25)]
    await system.publish(*sent)
    for env in sent:
        await system.stored(env.id)
    # When following next_cursor 10 at a time
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"topic": "page.test", "limit": 10, **({"cursor": cursor} if cursor else {})}
        page = await _json(system.client, "/api/messages", **params)
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Then every message came once, newest first
    assert seen == [e.id for e in reversed(sent)]
    # And a forged cursor is a clear 400
    bad = await system.client.get("/api/messages", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400 and "cursor" in bad.json()["detail"]


async def test_detail_has_timeline_chain_and_never_the_token(system: System) -> None:
    # Given a message with a token, consumed by qa, which caused a verdict
    async with running_service(system, _qa()):
        env = Envelope.new("work.signed", {"n": 1}, token="eyJ.secret.token")
        await system.publish(env)

        async def with_chain() -> Any:
            response = await system.client.get(f"/api/messages/{env.id}")
            detail = response.json() if response.status_code == 200 else None
            done = detail and {t["state"] for t in detail["timeline"]} >= {"consumed"}
            return detail if done and detail["chain"]["children"] else None

        detail = await until(with_chain, 30, "the verdict in the chain")
    # Then the envelope is shown with the token masked, with qa's states and the verdict
    assert detail["envelope"]["token"] == "***"
    assert {t["state"] for t in detail["timeline"] if t["service"] == "qa"} >= {"consumed"}
    assert [(d["service"], d["state"]) for d in detail["deliveries"]] == [("qa", "consumed")]
    # (where it stands at each service; its history is the timeline, not repeated there)
    assert not {"times", "transitions"} & set(detail["deliveries"][0])
    assert detail["timeline"][0]["state"] == "sent" and detail["timeline"][0]["attempt"] is None
    (child,) = detail["chain"]["children"]
    assert child["topic"] == "work.done.verdict"
    # And the child's chain goes back up to it
    up = await _json(system.client, f"/api/messages/{child['id']}")
    assert up["chain"]["id"] == env.id
    page = await system.client.get(f"/messages/{env.id}")
    assert "eyJ.secret.token" not in page.text and "work.done.verdict" in page.text
    # And an unknown id is a 404 in both
    assert (await system.client.get("/api/messages/nope")).status_code == 404
    assert (await system.client.get("/messages/nope")).status_code == 404


async def test_reports_filter_by_minimum_level_and_source(system: System) -> None:
    reports = [
        Report(level="info", source="ingest", text="started"),
        Report(level="error", source="ingest", text="disk full"),
        Report(level="warning", source="scrub", text="slow disk"),
    ]
    await system.publish(*(Envelope.new(report_topic(r.level), r) for r in reports))

    async def three() -> bool:
        return len(await _json(system.client, "/api/reports")) >= 3

    await until(three, 30, "three reports")
    errors = await _json(system.client, "/api/reports", level="warning")
    assert {r["text"] for r in errors} == {"disk full", "slow disk"}
    ingest = await _json(system.client, "/api/reports", source="ingest")
    assert {r["text"] for r in ingest} == {"started", "disk full"}
    page = await system.client.get("/reports", params={"level": "error"})
    assert "disk full" in page.text and "slow disk" not in page.text


async def test_dead_letter_actions_need_a_login_and_a_csrf_token(system: System) -> None:
    # Given a message dead-lettered by a failing service
    async with running_service(system, _qa("broken", fail=True)):
        await system.publish(Envelope.new("work.poison", {"x": 1}))

        async def dead() -> Any:
            items = await _json(system.client, "/api/dead-letters", queue="broken")
            return items or None

        (letter,) = await until(dead, 30, "a dead letter")
        assert "cannot process <this>" in letter["reason"]
        url = "/api/dead-letters/broken/retry"
        # When retrying without logging in, Then 401
        assert (await system.client.post(url, json={})).status_code == 401
        # When logged in but without the CSRF token, Then 403 with the declared body
        token = await logged_in_csrf(system)
        refused = await system.client.post(url, json={})
        assert refused.status_code == 403
        assert "CSRF" in refused.json()["detail"]
        # When logged in with the token, Then the letter goes back and is tried again
        done = await system.client.post(
            url, json={"keys": [letter["key"]]}, headers={"x-csrf-token": token}
        )
        assert done.status_code == 200 and done.json() == {
            "queue": "broken",
            "action": "retry",
            "count": 1,
            "by": "ops",
        }
        (again,) = await until(dead, 30, "the retried message to die again")
        assert again["envelope"]["id"] == letter["envelope"]["id"]
        # And purging removes it for good
        purge = await system.client.post(
            "/api/dead-letters/broken/purge", headers={"x-csrf-token": token}
        )
        assert purge.json()["count"] == 1
        assert await _json(system.client, "/api/dead-letters", queue="broken") == []
        # And an unknown queue is a 404, not a silent zero
        missing = await system.client.post(
            "/api/dead-letters/nope/purge", headers={"x-csrf-token": token}
        )
        assert missing.status_code == 404


async def test_reads_need_a_login_when_configured(
    sqlite_bus_url: str, sqlite_store_url: str
) -> None:
    config = dashboard_config(login_for_reads=True)
    async with running_system(sqlite_bus_url, sqlite_store_url, config) as system:
        assert (await system.client.get("/api/overview")).status_code == 401
        page = await system.client.get("/messages")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        assert (await system.client.get("/metrics")).status_code == 401
        assert (await system.login()).status_code == 303
        assert (await system.client.get("/api/overview")).status_code == 200


async def test_login_refuses_bad_csrf_and_never_redirects_off_site(system: System) -> None:
    form = await system.client.get("/login")
    token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
    bad = await system.client.post(
        "/login", data={"user": "ops", "password": "x", "csrf_token": "forged"}
    )
    assert bad.status_code == 403
    ok = await system.client.post(
        "/login",
        data={
            "user": "ops",
            "password": "correct horse battery staple",
            "csrf_token": token,
            "next": "//evil.example/",
        },
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    assert "httponly" in ok.headers["set-cookie"].lower()


async def test_the_api_is_rate_limited(sqlite_bus_url: str, sqlite_store_url: str) -> None:
    config = dashboard_config(rate_limit=0.5, rate_burst=3)
    async with running_system(sqlite_bus_url, sqlite_store_url, config) as system:
        # When a client calls the API four times at once
        answers = [await system.client.get("/api/reports") for _ in range(4)]
        # Then the fourth is refused, with how long to wait (1 token per 2 s, rounded up)
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        refused = answers[-1]
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 2
        assert refused.json() == {"detail": f"too many requests: retry after {wait} s or slow down"}
        assert refused.headers["cache-control"] == "no-store"
        # And the schema, an API call too, is limited alike
        assert (await system.client.get("/api/openapi.json")).status_code == 429
        # Pages are not API calls
        assert (await system.client.get("/reports")).status_code == 200


async def test_markup_is_escaped_and_security_headers_are_set(system: System) -> None:
    env = Envelope.new("work.x", {"v": "<script>alert(1)</script>"}, kind="K<script>")
    await system.publish(env)
    await system.stored(env.id)
    for path in (f"/messages/{env.id}", "/messages?topic=work.x"):
        page = await system.client.get(path)
        assert "<script>alert" not in page.text and "K<script>" not in page.text
        assert "&lt;script&gt;" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"


async def test_metrics_expose_states_queues_heartbeats_and_lag(system: System) -> None:
    async with running_service(system, _qa()):
        await system.publish(Envelope.new("work.m", {}))

        async def scraped() -> str | None:
            text = (await system.client.get("/metrics")).text
            return text if 'stalwart_deliveries{state="consumed"} 1' in text else None

        text = await until(scraped, 30, "consumed deliveries in /metrics")
    for name in (
        'stalwart_queue_depth{queue="qa",status="ready"}',
        'stalwart_dead_letters{queue="qa"}',
        "stalwart_heartbeat_age_seconds{",
        "stalwart_instance_up{",
        "stalwart_persistence_lag_seconds",
        "stalwart_topic_messages_total{",
        "stalwart_dashboard_live_messages_total",
        "stalwart_dashboard_request_seconds_bucket{",
    ):
        assert name in text, name


async def test_bad_input_gets_a_clear_error(system: System) -> None:
    bad_topic = await system.client.get("/api/messages", params={"topic": "a..b"})
    assert bad_topic.status_code == 400 and "bad word" in bad_topic.json()["detail"]
    assert (await system.client.get("/api/messages", params={"state": "bogus"})).status_code == 422
    assert (await system.client.get("/api/messages", params={"limit": 0})).status_code == 422
    page = await system.client.get("/messages", params={"since": "yesterday-ish"})
    assert page.status_code == 400 and "since must be a time" in page.text
    assert (await system.client.get("/api/panels/nope")).status_code == 422


async def test_the_dead_letter_form_needs_a_login_and_its_token(system: System) -> None:
    # Given a dead letter in a declared queue
    async with running_service(system, _qa("broken", fail=True)):
        await system.publish(Envelope.new("work.poison", {"x": 1}))

        async def dead() -> Any:
            return await _json(system.client, "/api/dead-letters", queue="broken") or None

        (letter,) = await until(dead, 30, "a dead letter")
        form = {"queue": "broken", "action": "purge", "key": letter["key"], "csrf_token": "x"}
        # When posting the form anonymously, Then the browser is sent to log in
        anonymous = await system.client.post("/dead-letters", data=form)
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == "/login?next=%2Fdead-letters"
        # When logged in with a forged token, Then it is refused and nothing is lost
        token = await logged_in_csrf(system)
        assert (await system.client.post("/dead-letters", data=form)).status_code == 403
        assert len(await _json(system.client, "/api/dead-letters", queue="broken")) == 1
        # When nothing is selected, Then it says so
        empty = {**form, "csrf_token": token}
        del empty["key"]
        refused = await system.client.post("/dead-letters", data=empty)
        assert refused.status_code == 400 and "select dead letters" in refused.text
        # When posted with the page's token, Then it is purged and the page says so
        done = await system.client.post("/dead-letters", data={**form, "csrf_token": token})
        assert done.status_code == 303 and "done=purge&count=1" in done.headers["location"]
        assert await _json(system.client, "/api/dead-letters", queue="broken") == []


async def test_login_attempts_are_rate_limited(system: System) -> None:
    # Given the default of 5 attempts in a burst
    page = await system.client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"user": "ops", "password": "guess", "csrf_token": token}
    # When guessing 6 times in a row, Then the 6th is refused before it is checked
    answers = [await system.client.post("/login", data=form) for _ in range(6)]
    assert [a.status_code for a in answers] == [401] * 5 + [429]
    # And told, as JSON even to a form, to wait at most one refill (1 attempt per 5 s)
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 5
    assert answers[-1].json()["detail"].startswith("too many requests: retry after")


async def test_the_schema_declares_the_refusals_any_api_call_may_get(system: System) -> None:
    # Given the API's schema as served
    schema = (await system.client.get("/api/openapi.json")).json()
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert operations
    # Then every operation declares the refusals that come before any route runs:
    # 400 for a Host name not allowed or a NUL, 429 with Retry-After over the rate limit,
    # 401 with its {detail} body when reads need a login and the client has none
    for op in operations:
        answers = op["responses"]
        assert "Host" in answers["400"]["description"], op["operationId"]
        assert "Retry-After" in answers["429"]["headers"], op["operationId"]
        assert _detail_schema(answers["401"]) == {"type": "string"}, op["operationId"]


def _detail_schema(answer: dict[str, Any]) -> Any:
    """The schema of ``detail`` in a declared answer's JSON body, if it has one."""
    body = answer.get("content", {}).get("application/json", {}).get("schema", {})
    return body.get("properties", {}).get("detail")


# A value for each path parameter of the API, so that every operation can be called.
_PATH_VALUES = {"message_id": "m-1", "queue": "work", "action": "retry", "name": "processes"}


async def test_a_login_refusal_is_declared_by_the_operation_that_answers_it(
    sqlite_bus_url: str, sqlite_store_url: str
) -> None:
    # Given a dashboard whose reads need a login, and its schema
    config = dashboard_config(login_for_reads=True)
    async with running_system(sqlite_bus_url, sqlite_store_url, config) as system:
        schema = (await system.client.get("/api/openapi.json")).json()
        # When each of its operations is called with no session
        called = [
            (op, await system.client.request(method, path.format(**_PATH_VALUES)))
            for path, item in schema["paths"].items()
            for method, op in item.items()
        ]
    assert called
    # Then each answers 401 with a {detail: string} body, and its schema declares that
    for op, answer in called:
        assert answer.status_code == 401, op["operationId"]
        assert isinstance(answer.json()["detail"], str), op["operationId"]
        declared = op["responses"].get(str(answer.status_code), {})
        assert _detail_schema(declared) == {"type": "string"}, op["operationId"]


async def test_nothing_is_loaded_from_elsewhere(system: System) -> None:
    # The API schema is served; no page refers to another origin.
    assert (await system.client.get("/api/openapi.json")).status_code == 200
    assert (await system.client.get("/api/docs")).status_code == 404
    for path in ("/", "/messages", "/login", "/dead-letters"):
        html = (await system.client.get(path)).text
        assert not re.search(r'(src|href|action)="(https?:)?//', html), path


async def test_an_unreachable_bus_degrades_to_history_only(sqlite_store_url: str) -> None:
    # Given a store with a message, and a bus URL where nothing listens
    store = await Store.open(sqlite_store_url)
    env = Envelope.new("work.kept", {"n": 1})
    await store.write([env])
    settings = Settings.model_validate({"bus": {"url": "amqp://guest:s3cret@127.0.0.1:1/"}})
    config = dashboard_config(bus_retry_initial=0.05, bus_retry_max=0.1)
    app = create_app(settings, config=config, source=StoreSource.of(store))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1:8321"
            ) as client:
                # When the dashboard is opened, Then history is served and the bus problem said
                detail = await client.get(f"/api/messages/{env.id}")
                assert detail.status_code == 200
                overview = (await client.get("/api/overview")).json()
                assert "unreachable" in overview["bus_error"]
                queues = await client.get("/api/queues")
                assert queues.status_code == 503 and "unreachable" in queues.json()["detail"]
                page = await client.get("/")
                assert page.status_code == 200 and "unreachable" in page.text
                assert "next try in" in page.text and "restart" not in page.text
                metrics = (await client.get("/metrics")).text
                assert "stalwart_dashboard_bus_up 0.0" in metrics
                # And the bus password is never shown
                assert "s3cret" not in page.text and "s3cret" not in queues.text
                bus = await client.get("/api/bus")
                assert bus.json()["reachable"] is False and "s3cret" not in bus.text

                # And it keeps trying in the background
                async def tried_again() -> bool:
                    return bool((await client.get("/api/bus")).json()["attempts"] >= 3)

                await until(tried_again, 10, "more tries of the bus")
            # When the dashboard closes while it is still trying, Then it stops at once
            closing = time.monotonic()
        assert time.monotonic() - closing < 2.0
    finally:
        await store.close()
