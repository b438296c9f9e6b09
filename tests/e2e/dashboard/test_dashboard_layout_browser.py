"""Every view in Chromium at 1440 and 390 px: nothing spills out of its card or the
screen, a long ref wraps, odd ids open their own page, and pages follow their stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dashboard_e2e import LiveSystem, browser, child_service, live_system
from playwright.async_api import Browser, Page, expect

from stalwart.envelope import Envelope
from stalwart.messages import Report, report_topic
from waiting import until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (1440, 390)
ODD_IDS = ("a/b", "../../api/bus")

# Elements wider than their card, or than the screen. Inside a scrolling box
# (wide tables, the map) only the box itself counts: its content scrolls.
_OVERFLOW_JS = """() => {
  const scrollers = ".table-scroll, .map-scroll, .scroll, pre.body";
  const bad = [];
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > width + 1) {
    bad.push("page " + document.documentElement.scrollWidth + " > " + width);
  }
  for (const card of document.querySelectorAll("main .card, main .stat")) {
    const box = card.getBoundingClientRect();
    for (const el of card.querySelectorAll("*")) {
      const scroller = el.parentElement && el.parentElement.closest(scrollers);
      if (scroller && card.contains(scroller)) { continue; }
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) { continue; }
      if (r.right > box.right + 1 || r.left < box.left - 1) {
        const at = Math.round(r.right) + " > " + Math.round(box.right);
        bad.push(el.tagName + "." + el.className + " " + at);
      }
    }
  }
  return bad.slice(0, 5);
}"""


def _unit(topic: str, body: dict[str, Any], **kw: Any) -> Envelope:
    return Envelope.new(topic, body, kind="Unit", sender="dispatcher@jao/1", **kw)


async def _fill(system: LiveSystem) -> Envelope:
    """Traffic through qa, a report with a 400-character ref, odd ids, a dead letter."""
    await system.queue_declared("qa")
    units = [_unit(f"work.qa.s{i % 3}", {"unit": f"uid://A003/X{i}"}) for i in range(9)]
    odd = [_unit("odd.ids", {"n": i}, id=i) for i in ODD_IDS]
    report = Report(
        level="error", source="scrub", text="checksum mismatch", refs={"ref": "x" * 400}
    )
    reports = [Envelope.new(report_topic("error"), report, sender="scrub@na/1")]
    await system.transport.publish([*units, *odd, *reports])
    await system.transport.publish([_unit("work.qa.s0", {"poison": True})])

    async def settled() -> bool:
        return (await system.transport.queue_stats("qa")).dead == 1

    await until(settled, 30, "the dead letter")
    return units[0]


async def _views(b: Browser, system: LiveSystem, unit: Envelope, out: Path) -> list[str]:
    """Screenshots of every view at each width; what spills over, as lines."""
    views = (
        ("/", "overview", "Services by site"),
        ("/map", "system-map", "System map"),
        ("/services/qa", "service", "Service qa"),
        ("/messages", "messages", "work.qa"),
        (f"/messages/{unit.id}", "message-detail", "work.qa"),
        ("/reports", "reports", "checksum mismatch"),
        ("/dead-letters", "dead-letters", "poison"),
        ("/processes", "processes", "Processes"),
        ("/ha", "ha", "HA"),
        ("/integrity", "integrity", "Integrity"),
        ("/login", "login", "Log in"),
    )
    spills: list[str] = []
    for width in WIDTHS:
        page = await b.new_page(viewport={"width": width, "height": 900})
        for path, name, text in views:
            response = await page.goto(system.url + path)
            assert response is not None and response.status == 200, path
            await expect(page.locator("main")).to_contain_text(text)
            await page.screenshot(path=str(out / f"{name}-{width}.png"), full_page=True)
            # Then nothing spills out of its card, nor the page out of the screen
            spills += [f"{path} at {width} px: {s}" for s in await page.evaluate(_OVERFLOW_JS)]
            # And a 400-character ref does not make the page huge
            height = await page.evaluate("document.documentElement.scrollHeight")
            assert height < 20_000, f"{path} at {width} px is {height} px tall"
        await page.close()
    return spills


async def test_every_view_fits_at_1440_and_390_px(tmp_path: Path, chromium_path: str) -> None:
    out = tmp_path / "screenshots"
    out.mkdir()
    async with (
        live_system(tmp_path) as system,
        browser(chromium_path) as b,
        child_service(system, "dashboard_demo_service:qa"),
    ):
        unit = await _fill(system)
        spills = await _views(b, system, unit, out)
    assert len(list(out.glob("*.png"))) == 22
    assert spills == [], "\n".join(spills)


async def _open_odd(page: Page, system: LiveSystem, message_id: str) -> None:
    await page.goto(system.url + "/messages?topic=odd.ids")
    await page.locator("tr.message a.mono", has_text=message_id[:13]).click()
    await expect(page.locator("h1")).to_contain_text("odd.ids")
    assert page.url.startswith(system.url + "/messages/")


async def test_pages_follow_their_stream_and_odd_ids_open_their_own_page(
    tmp_path: Path, chromium_path: str
) -> None:
    async with (
        live_system(tmp_path) as system,
        browser(chromium_path) as b,
        child_service(system, "dashboard_demo_service:qa"),
    ):
        await system.queue_declared("qa")
        page = await b.new_page(viewport={"width": 1440, "height": 900})
        # Given a poison unit's page, opened as soon as it is stored
        poison = _unit("work.qa.s1", {"poison": True})
        await system.transport.publish([poison])

        async def stored() -> bool:
            response = await page.goto(system.url + f"/messages/{poison.id}")
            return response is not None and response.status == 200

        await until(stored, 30, "the poison unit in the store")
        await page.evaluate("window.notReloaded = true")
        # Then, without a reload, its timeline grows to its dead letter, sent first
        timeline = page.locator("table.timeline tr[data-state]")
        await expect(page.locator('table.timeline tr[data-state="dead"]')).to_have_count(
            1, timeout=30_000
        )
        assert await timeline.first.get_attribute("data-state") == "sent"
        assert await page.evaluate("window.notReloaded") is True
        # And the header says the page is live
        await expect(page.locator("#live-status")).to_have_class("live-dot on")
        # Given the dead letters page, open and live, and a second poison unit sent after
        await page.goto(system.url + "/dead-letters")
        await expect(page.locator("#live-status")).to_have_class("live-dot on")
        await expect(page.locator("tr.dead-letter")).to_have_count(1)
        await page.evaluate("window.notReloaded = true")
        await system.transport.publish([_unit("work.qa.s2", {"poison": True, "n": 2})])
        # Then its dead letter appears without a reload
        await expect(page.locator("tr.dead-letter")).to_have_count(2, timeout=30_000)
        assert await page.evaluate("window.notReloaded") is True
        # And a page without a stream shows no dot rather than a grey one
        await page.goto(system.url + "/login")
        await expect(page.locator("#live-status")).to_be_hidden()
        # When ids with a slash or a path climb are opened from the list
        await system.transport.publish([_unit("odd.ids", {"n": i}, id=i) for i in ODD_IDS])

        async def listed() -> bool:
            await page.goto(system.url + "/messages?topic=odd.ids")
            return await page.locator("tr.message").count() == len(ODD_IDS)

        await until(listed, 30, "the odd ids in the list")
        # Then each opens its own detail page, not another route
        for message_id in ODD_IDS:
            await _open_odd(page, system, message_id)
            await expect(page.locator("main")).to_contain_text(message_id)
