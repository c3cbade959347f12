"""R9: the wall shows each streaming officer's last known position on the tile, small, with its
age: the one stored before the page opened, then each newer one pushed over the websocket."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.async_api import Page, expect

from tests.browser.conftest import sign_in
from tests.conftest import ApiClient
from tests.media import publishing
from tests.support import ZhihuiProcess


def _fix(latitude: float, longitude: float) -> dict[str, object]:
    return {
        "latitude": latitude,
        "longitude": longitude,
        "accuracy_m": 9,
        "at": datetime.now(UTC).isoformat(),
    }


async def test_a_tile_shows_the_officers_last_known_position_and_follows_it(
    zhihui: ZhihuiProcess, officer1: ApiClient, page: Page
) -> None:
    assert officer1.http.post("/api/positions", json=_fix(31.23041, 121.47372)).status_code == 202
    async with publishing(zhihui, "officer1", device="bodycam") as live:
        await sign_in(page, f"{zhihui.base_url}/wall", "commander", zhihui.credentials["commander"])
        position = page.locator(f'.tile[data-stream-id="{live.stream_id}"] .tile-position')
        await expect(position).to_contain_text("31.2304, 121.4737 ·")
        await expect(position).to_contain_text("s ago")
        assert "±9 m" in (await position.get_attribute("title") or "")

        assert officer1.http.post("/api/positions", json=_fix(31.24, 121.48)).status_code == 202
        await expect(position).to_contain_text("31.2400, 121.4800 ·")  # pushed within about a second
