"""Attacks on the dashboard, each as it was carried out, and what stops it."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_system import (
    PASSWORD,
    System,
    csrf_from,
    dashboard_config,
    logged_in_csrf,
    running_system,
)

from stalwart.config import Settings
from stalwart.dashboard import create_app
from stalwart.dashboard.auth import SESSION_COOKIE, Authenticator, hash_password
from stalwart.envelope import Envelope, utcnow
from stalwart.errors import EX_CONFIG
from stalwart.messages import Heartbeat, heartbeat_topic
from stalwart.service import Context, Service, ServiceRunner, TokenAuthority
from waiting import until

PURGE = "/api/dead-letters/nope/purge"  # no such queue: 404 once CSRF and origin pass
LOGIN_FOR_READS = dashboard_config(login_for_reads=True)


def _browser(system: System, **cookies: str) -> httpx.AsyncClient:
    """Another browser on the same dashboard."""
    return httpx.AsyncClient(
        transport=system.client._transport, base_url=str(system.client.base_url), cookies=cookies
    )


async def _session_cookie(system: System) -> str:
    await logged_in_csrf(system)
    return system.client.cookies[SESSION_COOKIE]


async def test_a_tossed_csrf_cookie_does_not_act_for_a_logged_in_victim(system: System) -> None:
    # Given an attacker's own CSRF cookie and the token the login page gave it
    async with _browser(system) as attacker:
        page = await attacker.get("/login")
        tossed, token = attacker.cookies["stalwart_csrf"], csrf_from(page.text)
    # And a victim logged in, whose browser got that cookie from another port of the host
    await logged_in_csrf(system)
    system.client.cookies.set("stalwart_csrf", tossed)
    # When the attacker's page makes the victim's browser purge with the attacker's token
    forged = await system.client.post(PURGE, headers={"x-csrf-token": token})
    # Then it is refused: the token is bound to the victim's session, not to a cookie
    assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]


async def test_state_changes_from_another_origin_are_refused(system: System) -> None:
    # Given a logged-in user with the page's own token
    token = await logged_in_csrf(system)
    headers = {"x-csrf-token": token}
    # When a page on another port (another origin) or another site posts
    other_port = await system.client.post(
        PURGE, headers={**headers, "origin": "http://127.0.0.1:9999"}
    )
    same_site = await system.client.post(PURGE, headers={**headers, "sec-fetch-site": "same-site"})
    opaque = await system.client.post(PURGE, headers={**headers, "origin": "null"})
    # Then each is refused before it runs, saying why
    for response in (other_port, same_site, opaque):
        assert response.status_code == 403 and "refused" in response.json()["detail"]
    # And from the dashboard's own origin it goes through (to "no such queue")
    own = {**headers, "origin": "http://127.0.0.1:8321", "sec-fetch-site": "same-origin"}
    assert (await system.client.post(PURGE, headers=own)).status_code == 404


async def test_a_foreign_host_name_gets_400_dns_rebinding(system: System) -> None:
    # Given a message whose body a rebinding page would read
    env = Envelope.new("work.private", {"secret": "body"})
    await system.publish(env)
    await system.stored(env.id)
    # When asked under a name the attacker controls
    rebound = await system.client.get(
        f"/api/messages/{env.id}", headers={"host": "attacker.example:8321"}
    )
    # Then it is refused with what to do, and nothing of the message is shown
    assert rebound.status_code == 400 and "allowed_hosts" in rebound.json()["detail"]
    assert "body" not in rebound.text
    # And the dashboard's own names and IP addresses still work
    for host in ("localhost:8321", "127.0.0.1:8321", "[::1]:8321", "10.1.2.3:8321"):
        response = await system.client.get(f"/api/messages/{env.id}", headers={"host": host})
        assert response.status_code == 200, host


async def test_a_foreign_host_name_is_refused_before_anything_else(system: System) -> None:
    detail = (
        "unknown Host 'rebound.example': open the dashboard by a name in "
        "[dashboard] allowed_hosts (add this one there if it is yours)"
    )
    # Given pages, the API, the schema, the login form, metrics and static files
    for method, path in (
        ("GET", "/"),
        ("GET", "/api/bus"),
        ("GET", "/api/openapi.json"),
        ("POST", "/login"),
        ("GET", "/metrics"),
        ("GET", "/static/app.css"),
    ):
        # When asked under a name not allowed, even by a browser wanting a page
        refused = await system.client.request(
            method, path, headers={"host": "rebound.example", "accept": "text/html"}
        )
        # Then each answers the same JSON 400, not to be cached, with no Retry-After
        assert refused.status_code == 400, path
        assert refused.json() == {"detail": detail}, path
        assert refused.headers["cache-control"] == "no-store", path
        assert "retry-after" not in refused.headers, path
    # And a request with no Host at all is refused too
    no_host = await system.client.get("/api/bus", headers={"host": ""})
    assert no_host.status_code == 400 and "unknown Host ''" in no_host.json()["detail"]


async def test_allowed_hosts_adds_names(sqlite_bus_url: str, sqlite_store_url: str) -> None:
    config = dashboard_config(allowed_hosts=["dash.example.org"])
    async with running_system(sqlite_bus_url, sqlite_store_url, config) as system:
        ok = await system.client.get("/api/bus", headers={"host": "dash.example.org"})
        other = await system.client.get("/api/bus", headers={"host": "evil.example.org"})
    assert ok.status_code == 200 and other.status_code == 400


async def test_an_allowed_host_written_with_a_port_matches_by_name(
    sqlite_bus_url: str, sqlite_store_url: str
) -> None:
    # Given allowed hosts written as they appear in the browser's address bar
    config = dashboard_config(allowed_hosts=["Dash.Example.org:8321", "[fd00::7]:8321"])
    async with running_system(sqlite_bus_url, sqlite_store_url, config) as system:
        # When the dashboard is asked under those names, on that port, another or none
        hosts = ("dash.example.org:8321", "dash.example.org:443", "dash.example.org")
        answers = {h: await system.client.get("/api/bus", headers={"host": h}) for h in hosts}
        other = await system.client.get("/api/bus", headers={"host": "evil.example.org:8321"})
    # Then the names match, whatever the port, and another name is still refused
    for host, answer in answers.items():
        assert answer.status_code == 200, host
    assert other.status_code == 400


async def test_a_copied_session_cookie_stops_working_at_logout(
    sqlite_bus_url: str, sqlite_store_url: str
) -> None:
    async with running_system(sqlite_bus_url, sqlite_store_url, LOGIN_FOR_READS) as system:
        # Given a logged-in session, and a copy of its cookie in another browser
        stolen = await _session_cookie(system)
        async with _browser(system, **{SESSION_COOKIE: stolen}) as copy:
            assert (await copy.get("/api/bus")).status_code == 200
            # When the user logs out
            page = await system.client.get("/")
            out = await system.client.post("/logout", data={"csrf_token": csrf_from(page.text)})
            assert out.status_code == 303
            # Then the copy no longer works either
            assert (await copy.get("/api/bus")).status_code == 401


async def test_a_password_or_ttl_change_ends_existing_sessions(
    sqlite_bus_url: str, sqlite_store_url: str
) -> None:
    # Given a session cookie from a dashboard
    config = LOGIN_FOR_READS
    async with running_system(sqlite_bus_url, sqlite_store_url, config) as system:
        cookie = await _session_cookie(system)
    # When it is restarted with the same secret and a new password, or a new TTL
    changed = (
        config.model_copy(update={"users": {"ops": hash_password("new pass", n=2**10)}}),
        config.model_copy(update={"session_ttl": 60.0}),
    )
    for new in changed:
        app = create_app(Settings(), bind="127.0.0.1:8321", config=new, source=system.source)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8321", cookies={SESSION_COOKIE: cookie}
        ) as client:
            # Then the old cookie is refused
            assert (await client.get("/api/overview")).status_code == 401


async def test_responses_with_bodies_are_not_cached(system: System) -> None:
    env = Envelope.new("work.cached", {"n": 1})
    await system.publish(env)
    await system.stored(env.id)
    for path in ("/", f"/messages/{env.id}", f"/api/messages/{env.id}", "/metrics", "/nope"):
        response = await system.client.get(path)
        assert response.headers.get("cache-control") == "no-store", path
    assert "no-store" not in (await system.client.get("/static/app.css")).headers.get(
        "cache-control", ""
    )


async def test_the_success_banner_shows_only_fixed_text(system: System) -> None:
    planted = await system.client.get(
        "/dead-letters", params={"done": "Your session expired, call +1 555 0100"}
    )
    assert planted.status_code == 200 and "555 0100" not in planted.text
    real = await system.client.get("/dead-letters", params={"done": "retry", "count": 3})
    assert "retried 3 dead letter(s)" in real.text


async def test_a_nul_character_is_bad_input_not_an_outage(system: System) -> None:
    for path in ("/api/messages?text=%00", "/messages?text=a%00b", "/api/messages/a%00b"):
        response = await system.client.get(path)
        assert response.status_code == 400, path
        assert "NUL" in response.json()["detail"] and "database" not in response.text


async def test_live_streams_are_limited_per_client(
    sqlite_bus_url: str, sqlite_store_url: str
) -> None:
    config = dashboard_config(live_per_client=2)
    async with running_system(sqlite_bus_url, sqlite_store_url, config) as system:
        hub = system.app.state.dashboard.hub
        # Given a client holding its two streams
        async with hub.subscribe("#", client="127.0.0.1"), hub.subscribe("#", client="127.0.0.1"):
            # When it opens a third, Then it gets 429 saying what to do
            third = await system.client.get("/live")
            assert third.status_code == 429 and "live_per_client" in third.json()["detail"]
            # And another client is not affected
            async with hub.subscribe("#", client="10.0.0.9"):
                assert hub.streams_of("10.0.0.9") == 1


async def test_failed_logins_are_logged(system: System, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "stalwart.dashboard")
    await system.login(password="guess")
    await system.login(user="root\nlogin: user=ops", password=PASSWORD)
    failed = [r.getMessage() for r in caplog.records if "login failed" in r.getMessage()]
    assert len(failed) == 2 and "user='ops'" in failed[0] and "127.0.0.1" in failed[0]
    assert "\n" not in failed[1]  # a typed name cannot forge a log line


async def test_a_password_check_does_not_stall_the_other_requests(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given password checks (scrypt, deliberately 50 to 200 ms of CPU) that note
    # whether they hold the event loop, which serves every page and live stream
    on_loop: list[bool] = []
    check = Authenticator.check

    def noting(self: Authenticator, user: str, password: str) -> bool:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return check(self, user, password)

    monkeypatch.setattr(Authenticator, "check", noting)
    # When someone logs in, rightly or not
    assert (await system.login()).status_code == 303
    assert (await system.login(password="guess")).status_code == 401
    # Then each check ran off the loop, in a thread of its own
    assert on_loop == [False, False]


async def test_a_weak_secret_is_refused_at_start_on_one_line(tmp_path: Path) -> None:
    config = tmp_path / "stalwart.toml"
    config.write_text('[dashboard]\nsecret = "change me"\n')
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("stalwart")),
        "dashboard",
        "--bind",
        "127.0.0.1:0",
        env={"STALWART_HOME": str(tmp_path), "STALWART_CONFIG": str(config), "PATH": ""},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == EX_CONFIG
    assert len(lines) == 1 and "secret is too weak" in lines[0]
    assert "set [dashboard] secret" in lines[0]


def _signed_service() -> Service:
    qa = Service("qa", site="eu", heartbeat_interval=0.5)

    @qa.handler("qa.work")
    async def handle(ctx: Context, body: Any) -> None:
        pass

    return qa


async def test_heartbeats_without_a_valid_token_are_marked(
    sqlite_bus_url: str, sqlite_store_url: str
) -> None:
    # Given a bus where services sign with a key, and a service holding a token
    settings = Settings.model_validate({"security": {"secret": "s" * 8 + "0123456789abcdef" * 2}})
    token = TokenAuthority(settings.security).issue("qa", [], ttl=600)
    async with running_system(
        sqlite_bus_url, sqlite_store_url, dashboard_config(), settings=settings
    ) as system:
        runner = ServiceRunner(_signed_service(), system.transport, settings, token=token)
        await runner.start()
        try:
            # When someone else on the bus forges a heartbeat for another instance
            forged = Heartbeat(
                service="qa",
                site="eu",
                instance="forged-1",
                host="h",
                pid=1,
                started_at=utcnow(),
                uptime=1.0,
                interval=60.0,
            )
            await system.publish(
                Envelope.new(heartbeat_topic("qa"), forged, sender="qa@eu/forged-1")
            )

            async def both() -> list[dict[str, Any]] | None:
                found = (await system.client.get("/api/components")).json()
                return found if len(found) == 2 else None

            instances = {i["instance"]: i for i in await until(both, 30, "two instances")}
            # Then only the forged one is marked, on the API, the page and /metrics
            assert instances["forged-1"]["unverified"] is True
            assert instances[runner.instance]["unverified"] is False
            page = (await system.client.get("/")).text
            assert page.count(">unverified</span>") == 1
            metrics = (await system.client.get("/metrics")).text
            assert 'stalwart_unauthenticated_messages_total{family="heartbeat"} 1.0' in metrics
            assert 'stalwart_unauthenticated_messages_total{family="lifecycle"} 0.0' in metrics
        finally:
            await asyncio.wait_for(runner.stop(grace=1.0), 10)
