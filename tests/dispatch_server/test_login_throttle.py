"""R17: password guessing is slowed down. After too many failed sign-ins for one username (or
from one address) further attempts get 429 with Retry-After, before any password is checked,
and the answer is the same whether the account exists or not."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import running_zhihui

WINDOW = "60"


def _login(base_url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{base_url}/api/auth/login", json={"username": username, "password": password})


def test_failed_sign_ins_are_held_per_username_and_per_address(workdir: Path) -> None:
    env = {
        "ZHIHUI_AUTH__LOGIN_WINDOW_SECONDS": WINDOW,
        "ZHIHUI_AUTH__LOGIN_FAILURES_PER_USERNAME": "3",
        "ZHIHUI_AUTH__LOGIN_FAILURES_PER_SOURCE": "8",
    }
    with running_zhihui(workdir, "--demo", **env) as zhihui:
        base = zhihui.base_url
        right = zhihui.credentials["commander"]
        for username in ("commander", "nobody-at-all"):
            answers = [_login(base, username, "wrong password").status_code for _ in range(3)]
            assert answers == [401, 401, 401]
            held = _login(base, username, "wrong password")
            assert held.status_code == 429
            assert "too many failed sign-ins" in held.json()["detail"]
            assert 1 <= int(held.headers["retry-after"]) <= int(WINDOW) + 1
        # Even the right password waits: nothing is checked while the username is held ...
        assert _login(base, "commander", right).status_code == 429
        # ... but other people can still sign in, until the address itself has failed too often.
        assert _login(base, "officer1", zhihui.credentials["officer1"]).status_code == 200
        for _ in range(2):
            assert _login(base, "officer2", "wrong password").status_code == 401
        assert _login(base, "officer1", zhihui.credentials["officer1"]).status_code == 429

        admin = httpx.post(
            f"{base}/api/auth/login", json={"username": "admin", "password": zhihui.admin_password or ""}
        )
        assert admin.status_code == 429  # the address is held for everyone
