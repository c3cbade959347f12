"""``GET /api/health`` (R18: a load balancer in front of several processes, a supervisor, a script
waiting for the server): 200 while the database answers, 503 with the reason while it does not,
``degraded`` (still 200) while Redis does not answer. Real parts: ``zhihui up`` on SQLite, and two
processes' worth of settings on a real PostgreSQL and a real Redis, made to stop answering."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from tests.support import (
    ZhihuiProcess,
    _postgres_admin,
    _run_async,
    postgres_database,
    redis_url,
    running_zhihui,
)


def _health(base_url: str) -> httpx.Response:
    return httpx.get(f"{base_url}/api/health", timeout=10)  # no credentials: it is public


def _assert_healthy(base_url: str, *, database: str, bus: str) -> None:
    response = _health(base_url)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok", "database": database, "bus": bus, "bus_reachable": True}


def _until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come about in time"
        time.sleep(0.1)


def test_a_server_on_its_embedded_defaults_is_healthy(zhihui: ZhihuiProcess) -> None:
    _assert_healthy(zhihui.base_url, database="sqlite", bus="in-process")


def test_a_database_that_stops_answering_is_a_503_until_it_answers_again(tmp_path: Path) -> None:
    redis_at = redis_url()
    with postgres_database() as database_url:
        name = database_url.rsplit("/", 1)[1]
        env = {
            "ZHIHUI_DATABASE_URL": database_url,
            "ZHIHUI_REDIS_URL": redis_at,
            "ZHIHUI_REDIS_PREFIX": f"zhihui-test-{secrets.token_hex(6)}:",
        }
        with running_zhihui(tmp_path, **env) as zhihui:
            _assert_healthy(zhihui.base_url, database="postgresql", bus="redis")

            # The database refuses new connections and drops the server's: a clear 503, no trace.
            _run_async(_postgres_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            _run_async(
                _postgres_admin(
                    f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
                )
            )
            down = _health(zhihui.base_url)
            assert down.status_code == 503, down.text
            assert down.json()["detail"].startswith("the database does not answer")
            assert "Traceback" not in down.text

            _run_async(_postgres_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            _until(lambda: _health(zhihui.base_url).status_code == 200)

            # Redis holds every client's commands for 3 s: pushes would be late, so degraded.
            admin = redis.Redis.from_url(redis_at)
            try:
                admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
                paused = _health(zhihui.base_url)
                assert paused.status_code == 200, paused.text
                assert paused.json()["status"] == "degraded" and paused.json()["bus_reachable"] is False
            finally:
                admin.execute_command("CLIENT", "UNPAUSE")
                admin.close()
            _until(lambda: _health(zhihui.base_url).json()["status"] == "ok")
