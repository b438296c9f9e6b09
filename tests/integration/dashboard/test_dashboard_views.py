"""The system map and the service page against the embedded bus, a SQLite store and a
real service."""

from __future__ import annotations

import re
from typing import Any

from dashboard_system import System, running_service

from stalwart.envelope import Envelope
from stalwart.messages import Report, report_topic
from stalwart.service import Context, Service
from waiting import until


def _checker(fail_on: str = "poison") -> Service:
    svc = Service("qa", site="eu", heartbeat_interval=1.0, max_attempts=1)

    @svc.handler("work.*")
    async def handle(ctx: Context, body: Any) -> None:
        if body.get(fail_on):
            raise RuntimeError("cannot process this unit")
        await ctx.publish("work.done.verdict", {"ok": True}, kind="Verdict")

    return svc


async def test_map_shows_publisher_topic_and_consumer_left_to_right(system: System) -> None:
    # Given a dispatcher publishing units that qa checks, one in four failing
    async with running_service(system, _checker()):
        units = [
            Envelope.new("work.unit", {"n": i, "poison": i % 4 == 0}, sender="disp@jao/1")
            for i in range(8)
        ]
        await system.publish(*units)

        async def drawn() -> str | None:
            page = await system.client.get("/map")
            ok = 'data-topic="work.unit"' in page.text and 'data-to="qa"' in page.text
            # qa's verdicts are stored after the units it consumed, and its site and
            # page come with its heartbeats: the map is complete once all are drawn
            ok = ok and 'data-topic="work.done.verdict"' in page.text
            known = '<a href="/services/qa"' in page.text and 'data-site="eu"' in page.text
            return page.text if ok and known and 'class="edge bad"' in page.text else None

        # When the map is drawn
        html = await until(
            drawn, 30, "the map to show disp -> work.unit -> qa at eu -> work.done.verdict"
        )
    # Then publisher, topic and consumer are boxes, in that order left to right
    xs = {
        name: float(x)
        for name, x in re.findall(r'data-(?:service|topic)="([^"]+)"><rect x="([0-9.]+)"', html)
    }
    assert xs["disp"] < xs["work.unit"] < xs["qa"] < xs["work.done.verdict"]
    # And qa, at site eu, links to its page; the failing hop is red, heartbeats are left out
    assert '<a href="/services/qa"' in html and 'data-site="eu"' in html
    assert 'data-from="work.unit" data-to="qa"' in html
    assert "sys.heartbeat" not in html


async def test_service_page_shows_throughput_latency_failures_and_instances(
    system: System,
) -> None:
    # Given qa at site eu, which consumed six units and failed two
    async with running_service(system, _checker()):
        units = [
            Envelope.new("work.unit", {"n": i, "poison": i < 2}, sender="disp@jao/1")
            for i in range(8)
        ]
        await system.publish(*units)

        async def shown() -> str | None:
            page = await system.client.get("/services/qa", params={"range": "15m"})
            assert page.status_code == 200, page.text
            return page.text if "cannot process this unit" in page.text else None

        # When its page is opened for the last 15 minutes
        html = await until(shown, 30, "qa's page to show its failures")
    # Then the failures are counted and grouped by reason, its instance is listed,
    # the three charts are drawn and the range is marked
    assert re.search(r'alarm"><span>failed</span><b>2</b>', html)
    assert re.search(
        r'<td class="wrap">gave up after 1 attempts: RuntimeError: cannot process this unit'
        r"</td><td>2<",
        html,
    )
    assert html.count('class="instance" data-status="up"') == 1
    assert html.count('<svg class="chart"') == 3 and "handler latency, ms" in html
    assert 'href="/services/qa?range=15m" class="active"' in html
    # And the other ranges, and a range that does not exist, are answered as such
    assert (await system.client.get("/services/qa?range=24h")).status_code == 200
    bad = await system.client.get("/services/qa?range=2d")
    assert bad.status_code == 422 and "range" in bad.text


async def test_panel_events_say_which_program_and_why(system: System) -> None:
    # Given a watchdog event about instance 0 of qa
    event = Envelope.new(
        "sys.watchdog.exited",
        {"event": "exited", "program": "qa", "instance": 0, "reason": "killed by SIGKILL"},
        kind="WatchdogEvent",
        sender="watchdog@eu/wd1",
    )
    await system.publish(event)

    async def listed() -> str | None:
        page = await system.client.get("/processes")
        return page.text if event.id in page.text else None

    # When the Processes panel lists it
    html = await until(listed, 30, "the Processes panel to list the event")
    # Then the row names the program instance and the reason, not just the topic
    row = html[html.index("WatchdogEvent") :][:600]
    assert "<b>qa[0]</b>" in row and "killed by SIGKILL" in row


async def test_overview_tiles_are_stable_and_the_timeline_starts_with_sent(
    system: System,
) -> None:
    # Given qa, which consumes one unit and fails another
    async with running_service(system, _checker()):
        ok = Envelope.new("work.unit", {"n": 1}, sender="disp@jao/1")
        bad = Envelope.new("work.unit", {"n": 2, "poison": True}, sender="disp@jao/1")
        await system.publish(ok, bad)

        async def shown() -> tuple[str, str] | None:
            page = await system.client.get(f"/messages/{ok.id}")
            front = await system.client.get("/")
            dead = 'class="stat alarm" data-state="dead"' in front.text
            done = 'data-state="consumed"' in page.text and dead
            return (page.text, front.text) if done else None

        html, overview = await until(shown, 30, "the unit consumed and the poison dead")
    # Then the message's timeline starts with its sending by disp, then qa's states
    states = re.findall(r'<tr data-state="(\w+)">', html)
    assert states[0] == "sent" and "consumed" in states[1:]
    assert "disp@jao/1" in html[html.index('data-state="sent"') :][:400]
    # And every state has its tile, trouble first, the failed one marked
    tiles = re.findall(r'<a class="stat( alarm)?" data-state="(\w+)"', overview)
    assert [s for _, s in tiles] == [
        "failed",
        "dead",
        "rejected",
        "expired",
        "received",
        "sent",
        "consumed",
    ]
    assert dict((s, a) for a, s in tiles)["dead"] == " alarm"
    assert dict((s, a) for a, s in tiles)["rejected"] == ""


async def test_ids_with_any_allowed_character_open_their_own_page(system: System) -> None:
    # Given messages whose ids hold a slash, a path climb, a query and a percent sign
    odd = ["a/b", "../../api/bus", "x?y=1#z", "50% done"]
    await system.publish(*(Envelope.new("odd.ids", {"n": i}, id=i) for i in odd))

    async def stored() -> bool:
        page = await system.client.get("/messages", params={"topic": "odd.ids"})
        return page.text.count('class="message"') >= len(odd)

    await until(stored, 30, "the odd ids in the store")
    listing = (await system.client.get("/messages", params={"topic": "odd.ids"})).text
    for message_id in odd:
        # When its link in the list is followed
        href = re.search(r'href="(/messages/[^"]+)"[^>]*>' + re.escape(message_id[:13]), listing)
        assert href is not None, message_id
        page = await system.client.get(href.group(1).replace("&amp;", "&"))
        # Then it is that message's page, and the JSON API finds it too
        assert page.status_code == 200 and "odd.ids" in page.text, message_id
        api = await system.client.get("/api" + href.group(1))
        assert api.status_code == 200 and api.json()["envelope"]["id"] == message_id


async def test_reports_are_paged_and_a_long_ref_wraps(system: System) -> None:
    # Given 60 reports, one with a 400-character unbroken ref
    reports = [
        Envelope.new(
            report_topic("info"),
            Report(level="info", source="scrub", text=f"run {i}", refs={"ref": "x" * 400}),
            sender="scrub@na/1",
        )
        for i in range(60)
    ]
    await system.publish(*reports)

    async def all_stored() -> str | None:
        page = (await system.client.get("/reports", params={"page": 2})).text
        return page if page.count('class="report"') == 10 else None

    # Then the first page holds 50 with a link to the next, the second the last 10
    second = await until(all_stored, 30, "60 reports in the store")
    first = (await system.client.get("/reports")).text
    assert first.count('class="report"') == 50 and 'rel="next"' in first
    assert 'rel="next"' not in second and "← newer" in second
    assert '<td class="refs">' in first


async def test_a_forged_sender_name_opens_its_own_service_page(system: System) -> None:
    # A sender service name is whatever the envelope said: its link stays on its page
    page = await system.client.get("/services/qa%2F..%2F..%2Fapi%2Fbus")
    assert page.status_code == 200 and "Service qa/../../api/bus" in page.text
