"""Test support: a real Zhihui process on loopback, and small clients for it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx

LOOPBACK = "127.0.0.1"
CREDENTIAL_LINE = re.compile(r"^\s+(commander|field_officer|admin)\s+(\S+)\s+(\S+)\s*$")
ADMIN_LINE = re.compile(r"^\s+admin\s+(\S+)\s*$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class ServerProcess:
    """A ``zhihui`` server command running in its own folder, its output in a log file."""

    workdir: Path
    port: int
    process: subprocess.Popen[str]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def recordings(self) -> Path:
        return self.workdir / "recordings"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class ZhihuiProcess(ServerProcess):
    """``zhihui up`` running in its own folder, as a user would start it."""

    credentials: dict[str, str] = field(default_factory=dict)
    admin_password: str | None = None

    @property
    def database(self) -> Path:
        return self.workdir / "var" / "zhihui.db"


SOURCE_TREE = Path(__file__).resolve().parents[1]
"""The checkout these tests (and the benchmarks) belong to."""


def zhihui_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a Zhihui process started from a test or benchmark. It imports this
    checkout's code, whichever checkout the virtualenv was installed from (a benchmark run from a
    worktree of an older commit measures that commit)."""
    env = dict(os.environ)
    env.update(
        {
            "ZHIHUI_CONFIG": str(workdir / "zhihui.toml"),  # none there: built-in defaults
            "ZHIHUI_RELAY__ICE_HOST_ADDRESSES": f'["{LOOPBACK}"]',
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE_TREE), os.environ.get("PYTHONPATH")])),
        }
    )
    env.update(extra)
    return env


def run_zhihui(
    workdir: Path, *args: str, timeout: float = 60, input: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``zhihui <args>`` run to its end in ``workdir`` (environment: :func:`zhihui_env` and
    ``env``; standard input: ``input``), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "zhihui.cli", *args],
        cwd=workdir,
        env=zhihui_env(workdir, **env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _serve(
    workdir: Path, command: str, port: int, log_path: Path, args: Sequence[str], env: Mapping[str, str]
) -> subprocess.Popen[str]:
    """``zhihui <command> --port <port>`` started in ``workdir``, its output to ``log_path``."""
    return subprocess.Popen(
        [sys.executable, "-m", "zhihui.cli", command, "--port", str(port), "--log-level", "warning", *args],
        cwd=workdir,
        env=zhihui_env(workdir, **env),
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_answering(server: ServerProcess, what: str, path: str, timeout: float) -> None:
    """Return once GET ``path`` answers 200. If the process ends first, or ``timeout`` passes (it is
    then stopped), a RuntimeError with its log."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"{what} exited with {server.process.returncode}:\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.base_url}{path}", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{what} did not answer in {timeout} s:\n{server.log()}")
        time.sleep(0.1)


def start_zhihui(
    workdir: Path, *args: str, timeout: float = 30.0, port: int | None = None, **env: str
) -> ZhihuiProcess:
    """``zhihui up`` in ``workdir`` on ``port`` (default: a free one); returns once it answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = workdir / "zhihui.log"
    process = _serve(workdir, "up", port, log_path, args, env)
    zhihui = ZhihuiProcess(workdir=workdir, port=port, process=process, log_path=log_path)
    _wait_answering(zhihui, "zhihui up", "/api/health", timeout)
    for line in zhihui.log().splitlines():
        if match := CREDENTIAL_LINE.match(line):
            zhihui.credentials[match.group(2)] = match.group(3)
        elif match := ADMIN_LINE.match(line):
            zhihui.admin_password = match.group(1)
    return zhihui


@contextlib.contextmanager
def running_zhihui(workdir: Path, *args: str, **env: str) -> Iterator[ZhihuiProcess]:
    zhihui = start_zhihui(workdir, *args, **env)
    try:
        yield zhihui
    finally:
        zhihui.stop()


@dataclass
class RelayNodeProcess(ServerProcess):
    """``zhihui relay`` running in its own folder: a relay node reporting to a dispatch server (R18)."""


def start_relay_node(
    workdir: Path,
    port: int,
    *,
    dispatch_url: str,
    secret: str,
    name: str = "relay-1",
    log_name: str = "relay.log",
    timeout: float = 30.0,
    **env: str,
) -> RelayNodeProcess:
    """``zhihui relay`` on ``port``, reporting to ``dispatch_url``; returns once it answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / log_name
    settings = {
        "ZHIHUI_RELAY_NODE__NAME": name,
        "ZHIHUI_RELAY_NODE__DISPATCH_URL": dispatch_url,
        "ZHIHUI_RELAY_NODE__SECRET": secret,
    }
    process = _serve(workdir, "relay", port, log_path, (), {**settings, **env})
    relay = RelayNodeProcess(workdir=workdir, port=port, process=process, log_path=log_path)
    _wait_answering(relay, "zhihui relay", "/streams", timeout)
    return relay


def login(base_url: str, username: str, password: str) -> dict[str, object]:
    response = httpx.post(
        f"{base_url}/api/auth/login", json={"username": username, "password": password}, timeout=30
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


# -- PostgreSQL and Redis, the real ones ----------------------------------------------------------

POSTGRES_URL = os.environ.get("ZHIHUI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
"""A database on the server the tests may connect to, to create and drop their own databases."""
REDIS_URL = os.environ.get("ZHIHUI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(what: str, error: BaseException) -> NoReturn:
    """Skip the test on a developer's machine without ``what``; fail it in CI (``CI=true``)."""
    import pytest

    message = f"{what} is not reachable ({error!r}): `.ci/run` starts it"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def _run_async(coroutine: Any) -> Any:
    """Run a coroutine to completion from sync code, even when an event loop runs in this thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _postgres_admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test run; its ``postgresql://`` URL. Dropped after."""
    name = f"zhihui_test_{uuid.uuid4().hex[:12]}"
    try:
        _run_async(_postgres_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # not reachable, or not allowed to create databases
        unavailable(f"PostgreSQL at {POSTGRES_URL}", exc)
    try:
        yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        _run_async(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def redis_url() -> str:
    """The test Redis's URL, once it answers a PING."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        unavailable(f"Redis at {REDIS_URL}", exc)
    finally:
        client.close()
    return REDIS_URL
