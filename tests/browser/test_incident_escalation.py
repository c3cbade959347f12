"""Escalation on the wall in a real headless Chromium (R5, R6): a commander escalates an open
incident to the leader on duty with a reason; the leader's wall shows it at once, prominently,
with its package at a glance, and the leader acknowledges receipt from there. Escalated to the
upper court, the observer's wall shows it too, with the incident now shared with it, and follows
the incident's streams as they come and go."""

from __future__ import annotations

import asyncio
import secrets

from playwright.async_api import Browser, Page

from tests.browser.conftest import sign_in
from tests.conftest import ApiClient
from tests.media import publishing
from tests.support import ZhihuiProcess

PASSWORD = "a-long-password"


def _person(zhihui: ZhihuiProcess, role: str) -> ApiClient:
    admin = ApiClient(zhihui.base_url, "admin", str(zhihui.admin_password))
    username = f"{role.replace('_', '')}-{secrets.token_hex(3)}"
    body = {"username": username, "display_name": f"{role.title()} {username[-6:]}", "role": role}
    created = admin.http.post("/api/people", json=body | {"password": PASSWORD})
    assert created.status_code == 201, created.text
    return ApiClient(zhihui.base_url, username, PASSWORD)


async def _wall(
    browser: Browser, zhihui: ZhihuiProcess, username: str, password: str
) -> tuple[Page, list[str]]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(page, f"{zhihui.base_url}/wall", username, password)
    await page.locator("#connection-status[data-status='connected']").wait_for()
    return page, errors


async def test_a_commander_escalates_an_incident_and_the_recipients_walls_show_it(
    zhihui: ZhihuiProcess, browser: Browser, commander: ApiClient, officer1: ApiClient
) -> None:
    leader = _person(zhihui, "leader")
    observer = _person(zhihui, "upper_observer")
    assert leader.http.post("/api/duty/sign-in", json={"post": "leader-on-duty"}).status_code == 200
    title = f"Crowd at gate {secrets.token_hex(2)}"
    opened = commander.http.post(
        "/api/incidents",
        json={"kind": "emergency", "title": title, "place": "North gate", "officer_ids": [officer1.id]},
    )
    assert opened.status_code == 201, opened.text
    incident_id = opened.json()["id"]
    pages: list[tuple[Page, list[str]]] = []
    try:
        desk, desk_errors = await _wall(browser, zhihui, leader.user["username"], PASSWORD)  # type: ignore[arg-type]
        upper, upper_errors = await _wall(browser, zhihui, observer.user["username"], PASSWORD)  # type: ignore[arg-type]
        wall, wall_errors = await _wall(browser, zhihui, "commander", zhihui.credentials["commander"])
        pages = [(desk, desk_errors), (upper, upper_errors), (wall, wall_errors)]
        assert await desk.locator("#escalation-panel").is_hidden()  # nothing waits for the leader
        assert await upper.locator(f'.incident[data-incident-id="{incident_id}"]').count() == 0  # not shared

        # The commander escalates from the incident on the wall.
        item = wall.locator(f'.incident[data-incident-id="{incident_id}"]')
        await item.get_by_role("button", name="Escalate 上报").click()
        form = item.locator("form.escalate-form")
        await form.get_by_role(
            "button", name="Send escalation 发送上报"
        ).click()  # no reason yet: refused here
        await wall.locator("#message", has_text="reason").wait_for()
        assert await form.is_visible()
        await form.get_by_label("To 上报至").select_option("leader_on_duty")
        await form.get_by_label("Reason 原因").fill("The crowd is growing")
        await form.get_by_role("button", name="Send escalation 发送上报").click()
        done = item.locator(".incident-escalated")
        await done.wait_for()
        assert "Leader on duty" in (await done.text_content() or "")
        assert str(leader.user["display_name"]) in (await done.text_content() or "")
        assert await form.count() == 0 or await form.is_hidden()

        # The leader's wall shows it at once, prominently, and the leader acknowledges it there.
        received = desk.locator(f'#escalation-panel .escalation[data-incident-id="{incident_id}"]')
        await received.wait_for()
        text = await received.text_content() or ""
        assert title in text and "The crowd is growing" in text and "North gate" in text
        assert "from Commander" in text or "from commander" in text.lower()
        await received.get_by_role("button", name="Acknowledge 已收到").click()
        await desk.locator("#escalation-panel").wait_for(state="hidden")
        listed = (
            await asyncio.to_thread(commander.http.get, f"/api/incidents/{incident_id}/escalations")
        ).json()
        [escalation] = listed["items"]
        assert escalation["reason"] == "The crowd is growing"
        assert escalation["recipients"][0]["person"]["id"] == leader.id
        assert escalation["recipients"][0]["acknowledged_at"] is not None

        # To the upper court: the observer's wall shows it, and the incident, now shared with it.
        await item.get_by_role("button", name="Escalate 上报").click()
        await form.get_by_label("To 上报至").select_option("upper_court")
        await form.get_by_label("Reason 原因").fill("Please command live")
        await form.get_by_role("button", name="Send escalation 发送上报").click()
        await item.locator(".incident-escalated", has_text="Upper court").wait_for()
        waiting = upper.locator(f'#escalation-panel .escalation[data-incident-id="{incident_id}"]')
        await waiting.wait_for()
        assert "Please command live" in (await waiting.text_content() or "")
        await upper.locator(f'.incident[data-incident-id="{incident_id}"]').wait_for()
        assert (
            await upper.locator(f'.incident[data-incident-id="{incident_id}"] .escalate-toggle').count() == 0
        )
    finally:
        leader.http.post("/api/duty/sign-out", json={"post": "leader-on-duty"})
        for page, _errors in pages:
            await page.context.close()
    for _page, errors in pages:
        assert not errors, f"uncaught errors in the page: {errors}"


async def test_an_observers_wall_follows_the_streams_of_its_shared_incident(
    zhihui: ZhihuiProcess, browser: Browser, commander: ApiClient, officer2: ApiClient
) -> None:
    """R6: the upper court watches a shared incident live: a stream that starts after its wall opened
    appears on it, and goes when it ends (the wall looks again every few seconds)."""
    observer = _person(zhihui, "upper_observer")
    opened = commander.http.post(
        "/api/incidents",
        json={"kind": "major", "title": f"Eviction {secrets.token_hex(2)}", "officer_ids": [officer2.id]},
    )
    assert opened.status_code == 201, opened.text
    incident_id = opened.json()["id"]
    shared = commander.http.post(
        f"/api/incidents/{incident_id}/escalations",
        json={"target": "upper_court", "reason": "Watch with us", "observer_id": observer.id},
    )
    assert shared.status_code == 201, shared.text
    upper, errors = await _wall(browser, zhihui, observer.user["username"], PASSWORD)  # type: ignore[arg-type]
    try:
        await upper.locator(f'.incident[data-incident-id="{incident_id}"]').wait_for()
        async with publishing(zhihui, "officer2") as live:
            tile = upper.locator(f'.tile[data-stream-id="{live.stream_id}"]')
            await tile.wait_for(timeout=15000)
        await tile.wait_for(state="detached", timeout=15000)
    finally:
        await upper.context.close()
        commander.http.patch(f"/api/incidents/{incident_id}", json={"status": "closed"})
    assert not errors, f"uncaught errors in the page: {errors}"
