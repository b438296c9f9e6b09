"""The dashboard in headless Chromium against a live system with a real service process."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from dashboard_e2e import PASSWORD, browser, child_service, live_system, shot
from playwright.async_api import Locator, Page, Route, expect

from stalwart.bus import QueueSpec
from stalwart.envelope import Envelope
from stalwart.messages import Report, report_topic
from waiting import until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _qa(page: Page, status: str) -> Locator:
    return page.locator(f'.service[data-service="qa"] tr.instance[data-status="{status}"]')


def _unit(topic: str, body: dict[str, object], kind: str = "Unit") -> Envelope:
    return Envelope.new(topic, body, kind=kind, sender="dispatcher@jao/1")


async def test_overview_shows_service_up_then_late_then_down(
    tmp_path: Path, chromium_path: str
) -> None:
    # Given a live system with the qa service running as a child process
    async with live_system(tmp_path) as system, browser(chromium_path) as b:
        page = await b.new_page(viewport={"width": 1400, "height": 900})
        async with child_service(system, "dashboard_demo_service:qa") as proc:
            await page.goto(system.url + "/")
            # When its heartbeats arrive, Then the overview shows it up, under its site
            site = page.locator('.site[data-site="eu"] .service[data-service="qa"]')
            await expect(site).to_be_visible(timeout=20_000)
            await expect(_qa(page, "up")).to_have_count(1, timeout=10_000)
            await shot(page, "overview-up")
            # When the process dies without a word
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            # Then the page (refreshing by itself) shows it late, then down
            await expect(_qa(page, "late")).to_have_count(1, timeout=10_000)
            await shot(page, "overview-late")
            await expect(_qa(page, "down")).to_have_count(1, timeout=10_000)
            await shot(page, "overview-down")


async def test_filter_messages_open_detail_and_chain(tmp_path: Path, chromium_path: str) -> None:
    async with live_system(tmp_path) as system, browser(chromium_path) as b:
        page = await b.new_page(viewport={"width": 1400, "height": 900})
        async with child_service(system, "dashboard_demo_service:qa"):
            await system.queue_declared("qa")
            # Given units of work checked by qa (each causes a verdict) and other traffic
            units = [_unit("work.qa.eu", {"unit": f"uid://A001/X{i}"}) for i in range(3)]
            noise = [_unit("pipeline.process.jao", {"step": i}, "Step") for i in range(5)]
            await system.transport.publish(units + noise)

            async def verdicts() -> bool:
                await page.goto(system.url + "/messages?topic=work.verdict")
                return await page.locator("tr.message").count() >= 3

            await until(verdicts, 30, "three verdicts in the store")
            # When filtering the list by topic
            await page.goto(system.url + "/messages")
            await page.fill('input[name="topic"]', "work.qa.*")
            await page.click('button:has-text("Filter")')
            # Then only those messages are listed
            rows = page.locator("tr.message")
            await expect(rows).to_have_count(3)
            topics = await page.locator("tr.message td:nth-child(2)").all_inner_texts()
            assert set(topics) == {"work.qa.eu"}
            await shot(page, "messages-filtered")
            # When opening one message
            await rows.first.locator("td:last-child a").click()
            # Then its envelope, its timeline at qa, and its chain down to the verdict show
            await expect(page.locator("h1")).to_contain_text("work.qa.eu")
            await expect(page.locator("table.timeline")).to_contain_text("consumed", timeout=10_000)
            await expect(page.locator("ul.tree")).to_contain_text("work.verdict")
            await shot(page, "message-detail")
            # And the chain leads to the verdict's own page, whose chain goes back up
            await page.locator("ul.tree a", has_text="work.verdict").click()
            await expect(page.locator("h1")).to_contain_text("work.verdict")
            await expect(page.locator("ul.tree")).to_contain_text("work.qa.eu")


async def test_login_and_retry_a_dead_letter(tmp_path: Path, chromium_path: str) -> None:
    async with live_system(tmp_path) as system, browser(chromium_path) as b:
        page = await b.new_page(viewport={"width": 1400, "height": 900})
        async with child_service(system, "dashboard_demo_service:qa"):
            await system.queue_declared("qa")
            # Given a poison message that qa dead-letters after its attempts
            poison = _unit("work.qa.eu", {"unit": "uid://bad", "poison": True})
            await system.transport.publish([poison])

            async def dead() -> bool:
                return (await system.transport.queue_stats("qa")).dead == 1

            await until(dead, 20, "the poison message to be dead-lettered")
            await page.goto(system.url + "/dead-letters")
            await expect(page.locator("tr.dead-letter")).to_have_count(1)
            await expect(page.locator("tr.dead-letter")).to_contain_text("poison")
            # When not logged in, Then there is no retry button, only a way to log in
            await expect(page.locator('button[value="retry"]')).to_have_count(0)
            await page.click("text=Log in")
            await page.fill('input[name="user"]', "ops")
            await page.fill('input[name="password"]', "wrong")
            await page.click('button:has-text("Log in")')
            await expect(page.locator(".alert")).to_contain_text("wrong user or password")
            await page.fill('input[name="user"]', "ops")
            await page.fill('input[name="password"]', PASSWORD)
            await page.click('button:has-text("Log in")')
            await expect(page.locator(".user")).to_have_text("ops")
            await shot(page, "dead-letters")
            # When selecting the dead letter and retrying it
            await page.locator('tr.dead-letter input[name="key"]').check()
            await page.click('button[value="retry"]')
            # Then it is back in the queue (and qa tries it again)
            await expect(page.locator(".notice")).to_contain_text(
                "retried 1 dead letter(s) from qa"
            )
            await shot(page, "dead-letters-retried")

            async def retried() -> bool:
                detail = await page.request.get(f"{system.url}/api/messages/{poison.id}")
                timeline = (await detail.json())["timeline"]
                return sum(1 for t in timeline if t["state"] == "dead") >= 2

            await until(retried, 20, "the retried message to be tried again")


async def test_a_refresh_already_on_its_way_keeps_a_dead_letter_ticked(
    tmp_path: Path, chromium_path: str
) -> None:
    async with live_system(tmp_path) as system, browser(chromium_path) as b:
        page = await b.new_page(viewport={"width": 1400, "height": 900})
        # Given a dead letter of qa, and an operator logged in on the dead-letters page
        bus = system.transport
        await bus.declare(QueueSpec("qa", ("work.qa.*",)))
        await bus.publish([_unit("work.qa.eu", {"unit": "uid://bad"})])
        delivery = await asyncio.wait_for(anext(aiter(bus.consume("qa", 1))), 10.0)
        await delivery.dead("poison")
        await page.goto(system.url + "/dead-letters")
        await page.click("text=Log in")
        await page.fill('input[name="user"]', "ops")
        await page.fill('input[name="password"]', PASSWORD)
        await page.click('button:has-text("Log in")')
        await expect(page.locator("tr.dead-letter")).to_have_count(1)
        # And the page's live refresh fetched, its answer held on the way back
        asked, answer = asyncio.Event(), asyncio.Event()

        async def hold(route: Route) -> None:
            asked.set()
            await answer.wait()
            await route.continue_()

        await page.route(lambda url: "fragment=1" in url, hold)
        await asyncio.wait_for(asked.wait(), 20.0)
        # When the operator ticks the dead letter and then the refresh arrives
        await page.locator('tr.dead-letter input[name="key"]').check()
        async with page.expect_response(lambda r: "fragment=1" in r.url):
            answer.set()
        await page.wait_for_timeout(500)  # the answer read and (it was not) applied
        # Then the tick is still there, and retrying acts on that dead letter
        await expect(page.locator('tr.dead-letter input[name="key"]')).to_be_checked()
        await page.click('button[value="retry"]')
        await expect(page.locator(".notice")).to_contain_text("retried 1 dead letter(s) from qa")


async def test_markup_in_messages_renders_as_text(tmp_path: Path, chromium_path: str) -> None:
    async with live_system(tmp_path) as system, browser(chromium_path) as b:
        page = await b.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        # Given a message and a report carrying script and HTML in every free-text field
        evil = "<script>alert('x')</script><img src=x onerror=alert(1)>"
        env = Envelope.new("work.evil", {"note": evil}, kind="K<b>old</b>", sender="x<i>@site/1")
        report = Report(level="error", source="tool<script>", text=evil, refs={"k": evil})
        rep = Envelope.new(report_topic("error"), report, sender="tool@site/1")
        await system.transport.publish([env, rep])

        async def stored() -> bool:
            r = await page.request.get(f"{system.url}/api/messages/{env.id}")
            return r.ok

        await until(stored, 30, "the message in the store")
        # When viewing it everywhere it appears
        for path, shown in (
            ("/", evil),
            (f"/messages/{env.id}", "K<b>old</b>"),
            ("/messages?topic=work.evil", "x<i>@site/1"),
            ("/reports", "tool<script>"),
        ):
            await page.goto(system.url + path)
            # Then the markup shows as text and nothing of it becomes elements
            await expect(page.locator("main")).to_contain_text(shown)
            assert await page.locator("main script, main img, main i").count() == 0
        await shot(page, "escaped-markup")
        assert dialogs == []


async def test_every_view_renders_on_a_laptop_and_a_wall_screen(
    tmp_path: Path, chromium_path: str
) -> None:
    async with (
        live_system(tmp_path) as system,
        browser(chromium_path) as b,
        child_service(system, "dashboard_demo_service:qa"),
    ):
        await system.queue_declared("qa")
        # Given some traffic through qa, a report and a dead letter
        units = [_unit(f"work.qa.s{i % 3}", {"unit": f"uid://A002/X{i}"}) for i in range(12)]
        report = Report(level="warning", source="scrub", text="replica at na is 3 h stale")
        await system.transport.publish(
            [*units, Envelope.new(report_topic("warning"), report, sender="scrub@na/1")]
        )
        await system.transport.publish([_unit("work.qa.s0", {"poison": True})])

        async def settled() -> bool:
            return (await system.transport.queue_stats("qa")).dead == 1

        await until(settled, 20, "the dead letter")
        laptop = await b.new_page(viewport={"width": 1280, "height": 800})
        # When each view is opened, Then it shows its content (no error page)
        for path, name, text in (
            ("/", "overview", "Services by site"),
            ("/map", "system-map", "System map"),
            ("/messages", "messages", "work.qa"),
            ("/reports", "reports", "replica at na is 3 h stale"),
            ("/dead-letters", "dead-letters-anonymous", "poison"),
            ("/processes", "processes", "Processes"),
            ("/ha", "ha", "HA"),
            ("/integrity", "integrity", "Integrity"),
            ("/login", "login", "Log in"),
        ):
            response = await laptop.goto(system.url + path)
            assert response is not None and response.status == 200, path
            await expect(laptop.locator("main")).to_contain_text(text)
            await shot(laptop, f"view-{name}")
        await laptop.goto(system.url + "/map")
        await expect(laptop.locator('svg.map g.node[data-service="qa"]')).to_have_count(1)
        # And the overview fills a wall screen, dark themed
        wall = await b.new_page(viewport={"width": 2560, "height": 1440}, color_scheme="dark")
        await wall.goto(system.url + "/")
        await expect(wall.locator('.service[data-service="qa"]')).to_be_visible()
        await shot(wall, "view-overview-wall-dark")
