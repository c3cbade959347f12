"""Test support: a real Zhihui process on loopback, and small clients for it."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
class ZhihuiProcess:
    """``zhihui up`` running in its own folder, as a user would start it."""

    workdir: Path
    port: int
    process: subprocess.Popen[str]
    log_path: Path
    credentials: dict[str, str] = field(default_factory=dict)
    admin_password: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def recordings(self) -> Path:
        return self.workdir / "recordings"

    @property
    def database(self) -> Path:
        return self.workdir / "var" / "zhihui.db"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def zhihui_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ZHIHUI_CONFIG": str(workdir / "zhihui.toml"),  # none there: built-in defaults
            "ZHIHUI_RELAY__ICE_HOST_ADDRESSES": f'["{LOOPBACK}"]',
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def start_zhihui(workdir: Path, *args: str, timeout: float = 30.0, **env: str) -> ZhihuiProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / "zhihui.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "zhihui.cli", "up", "--port", str(port), "--log-level", "warning", *args],
        cwd=workdir,
        env=zhihui_env(workdir, **env),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    zhihui = ZhihuiProcess(workdir=workdir, port=port, process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"zhihui up exited with {process.returncode}:\n{zhihui.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{zhihui.base_url}/api/openapi.json", timeout=1).status_code == 200:
                break
        if time.monotonic() > deadline:
            zhihui.stop()
            raise RuntimeError(f"zhihui up did not answer in {timeout} s:\n{zhihui.log()}")
        time.sleep(0.1)
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


def login(base_url: str, username: str, password: str) -> dict[str, object]:
    response = httpx.post(f"{base_url}/api/auth/login", json={"username": username, "password": password})
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]
