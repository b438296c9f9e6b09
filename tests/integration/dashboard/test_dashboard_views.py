"""The system map and the service page against the embedded bus, a SQLite store and a
real service."""

from __future__ import annotations

import re
from typing import Any

from dashboard_system import System, running_service

from dashboard_waits import until
from stalwart.envelope import Envelope
from stalwart.service import Context, Service


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
            return page.text if ok and 'class="edge bad"' in page.text else None

        # When the map is drawn
        html = await until(drawn, what="the map to show the flow disp -> work.unit -> qa")
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
        html = await until(shown, what="qa's page to show its failures")
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
