"""The duty page in a real headless Chromium (R10): a commander signs in on the command desk (the
roster shows them signed in, unscheduled), adds an entry to the duty log, corrects it, and the
server has both, the first marked as corrected by the second."""

from __future__ import annotations

import asyncio

from playwright.async_api import Page

from tests.browser.conftest import sign_in
from tests.conftest import ApiClient
from tests.support import ZhihuiProcess

DESK = "command-desk"


async def test_duty_page_signs_in_and_adds_a_log_entry(
    zhihui: ZhihuiProcess, page: Page, commander: ApiClient
) -> None:
    await sign_in(page, f"{zhihui.base_url}/duty", "commander", zhihui.credentials["commander"])
    my_desk = page.locator(f'.my-post[data-post="{DESK}"]')
    await my_desk.wait_for()
    assert await my_desk.get_attribute("data-signed-in") == "false"

    await page.click(f'button.sign-in[data-post="{DESK}"]')
    await page.locator(f'.my-post[data-post="{DESK}"][data-signed-in="true"]').wait_for()
    roster_entry = page.locator(f'.post[data-post="{DESK}"] .signed-in[data-person-id="{commander.id}"]')
    await roster_entry.wait_for()
    assert "unscheduled" in (await roster_entry.text_content() or "")
    assert await page.locator(f'button.sign-out[data-post="{DESK}"]').is_visible()
    # Now someone holds the desk: it can be handed over from this page.
    assert await page.locator("#handover-post").input_value() == DESK

    await page.select_option("#log-entry-kind", "call")
    await page.fill("#log-entry-text", "Bank of Shanghai called about case 1234")
    await page.click("#log-form button[type=submit]")
    first = page.locator(".log-entry", has_text="Bank of Shanghai called about case 1234")
    await first.wait_for()
    assert await first.get_attribute("data-kind") == "call"

    await first.locator("button.correct").click()
    await page.fill("#log-entry-text", "Bank of China called about case 1234")
    await page.click("#log-form button[type=submit]")
    await page.locator(".log-entry", has_text="Bank of China called").wait_for()
    await page.locator(".log-entry.is-corrected", has_text="Bank of Shanghai").wait_for()
    assert await page.locator("#correcting").is_hidden()

    log = (await asyncio.to_thread(commander.http.get, "/api/duty/log", params={"q": "case 1234"})).json()
    texts = {entry["text"]: entry for entry in log["items"]}
    original, correction = (
        texts["Bank of Shanghai called about case 1234"],
        texts["Bank of China called about case 1234"],
    )
    assert (original["author"]["username"], original["post"]) == ("commander", DESK)
    assert (original["corrected_by_id"], correction["corrects_id"]) == (correction["id"], original["id"])
    signed = (await asyncio.to_thread(commander.http.get, "/api/duty/sign-ins", params={"open": True})).json()
    assert [(s["person"]["username"], s["post"], s["unscheduled"]) for s in signed] == [
        ("commander", DESK, True)
    ]
