from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ZhihuiProcess, login, running_zhihui


@pytest.fixture(scope="session")
def zhihui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZhihuiProcess]:
    """One ``zhihui up --demo`` for the session, on loopback, in a folder of its own."""
    with running_zhihui(tmp_path_factory.mktemp("zhihui"), "--demo") as process:
        yield process


class ApiClient:
    """A signed-in person's HTTP client."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        body = login(base_url, username, password)
        self.token = str(body["access_token"])
        self.user: dict[str, object] = body["user"]  # type: ignore[assignment]
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=15
        )

    @property
    def id(self) -> int:
        return int(self.user["id"])  # type: ignore[call-overload]


@pytest.fixture(scope="session")
def commander(zhihui: ZhihuiProcess) -> ApiClient:
    return ApiClient(zhihui.base_url, "commander", zhihui.credentials["commander"])


@pytest.fixture(scope="session")
def officer1(zhihui: ZhihuiProcess) -> ApiClient:
    return ApiClient(zhihui.base_url, "officer1", zhihui.credentials["officer1"])


@pytest.fixture(scope="session")
def officer2(zhihui: ZhihuiProcess) -> ApiClient:
    return ApiClient(zhihui.base_url, "officer2", zhihui.credentials["officer2"])


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
