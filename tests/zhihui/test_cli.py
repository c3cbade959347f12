"""``zhihui up``: embedded defaults, no built-in password, URLs printed (issue 2, R17, R18); every
command that needs the database says so plainly when it cannot reach it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support import login, run_zhihui, running_zhihui


def test_first_start_creates_an_admin_with_a_password_shown_once(workdir: Path) -> None:
    with running_zhihui(workdir) as first:
        assert first.admin_password and len(first.admin_password) >= 12
        output = first.log()
        for page in ("/wall", "/officer", "/api/docs"):
            assert f"{first.base_url}{page}" in output
        assert login(first.base_url, "admin", first.admin_password)["user"]["role"] == "admin"  # type: ignore[index]
        assert first.credentials == {}  # no demo accounts without --demo
    assert (workdir / "var" / "zhihui.db").exists()
    assert (workdir / "recordings").is_dir()

    with running_zhihui(workdir) as second:
        assert second.admin_password is None
        assert "admin" not in second.log().split("Recordings")[1].split("INFO")[0]
        refused = httpx.post(
            f"{second.base_url}/api/auth/login", json={"username": "admin", "password": "admin"}
        )
        assert refused.status_code == 401
        assert login(second.base_url, "admin", first.admin_password)


def test_demo_creates_a_commander_and_two_officers_with_fresh_passwords(workdir: Path) -> None:
    with running_zhihui(workdir, "--demo") as first:
        assert set(first.credentials) == {"commander", "officer1", "officer2"}
        roles = {
            name: login(first.base_url, name, pw)["user"]["role"] for name, pw in first.credentials.items()
        }  # type: ignore[index]
        assert roles == {"commander": "commander", "officer1": "field_officer", "officer2": "field_officer"}
    with running_zhihui(workdir, "--demo") as second:
        assert second.credentials["commander"] != first.credentials["commander"]
        refused = httpx.post(
            f"{second.base_url}/api/auth/login",
            json={"username": "commander", "password": first.credentials["commander"]},
        )
        assert refused.status_code == 401


def test_wrong_password_and_unknown_user_get_the_same_answer(workdir: Path) -> None:
    with running_zhihui(workdir, "--demo") as zhihui:
        wrong = httpx.post(
            f"{zhihui.base_url}/api/auth/login", json={"username": "commander", "password": "nope"}
        )
        unknown = httpx.post(
            f"{zhihui.base_url}/api/auth/login", json={"username": "ghost", "password": "nope"}
        )
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json() == unknown.json() == {"detail": "invalid username or password"}


def test_pages_and_api_docs_are_served(workdir: Path) -> None:
    with running_zhihui(workdir) as zhihui:
        for path, marker in (
            ("/wall", "wall"),
            ("/officer", "officer"),
            ("/", "Zhihui"),
            ("/api/docs", "swagger"),
        ):
            response = httpx.get(zhihui.base_url + path)
            assert response.status_code == 200, path
            assert marker.lower() in response.text.lower(), path


DATABASE_COMMANDS = [
    ("up",),
    ("db", "current"),
    ("db", "upgrade"),
    ("verify", "--all"),
    ("export", "--stream", "s1", "--out", "package.zip"),
    ("delete", "s1", "--reason", "test"),
    ("redact", "--stream", "s1", "--out", "redacted.webm"),
    ("user", "add", "li", "--role", "commander"),
]


@pytest.mark.parametrize("args", DATABASE_COMMANDS, ids=" ".join)
def test_a_database_that_cannot_be_reached_is_a_message_not_a_traceback(
    workdir: Path, args: tuple[str, ...]
) -> None:
    """Nothing listens on port 1 of the loopback: every command that needs the database says where
    it looked and why it failed (exit code 3), and never shows the password or a traceback."""
    url = "postgresql://zhihui:s3cret@127.0.0.1:1/zhihui"
    ran = run_zhihui(workdir, *args, input="a-long-password\na-long-password\n", ZHIHUI_DATABASE_URL=url)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 3, output
    assert "Could not use the database at postgresql+asyncpg://zhihui:***@127.0.0.1:1/zhihui" in output
    assert "Traceback" not in output and "s3cret" not in output


def test_a_sqlite_folder_that_cannot_be_made_is_a_message(workdir: Path) -> None:
    (workdir / "blocker").write_text("a file, not a folder")
    ran = run_zhihui(workdir, "db", "current", ZHIHUI_DATABASE_URL=f"sqlite:///{workdir}/blocker/var/z.db")
    assert ran.returncode == 3, ran.stdout + ran.stderr
    assert "for the SQLite database cannot be made" in ran.stdout
    assert "Traceback" not in ran.stdout + ran.stderr
