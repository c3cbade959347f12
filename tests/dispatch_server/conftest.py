from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dispatch_server.deployment import Deployment
from tests.support import postgres_database, start_zhihui

BACKENDS = ("sqlite", "postgresql")


@contextlib.contextmanager
def database_for(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh database of this backend: its plain URL (``sqlite:///...``, ``postgresql://...``)."""
    if backend == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{workdir / 'var' / 'zhihui.db'}"


@pytest.fixture(scope="session", params=BACKENDS)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """``zhihui up --demo`` on SQLite (its default) and on a PostgreSQL database of its own."""
    backend: str = request.param
    workdir = tmp_path_factory.mktemp(f"dispatch-{backend}")
    with database_for(backend, workdir) as url:
        env = {"ZHIHUI_DATABASE_URL": url} if backend == "postgresql" else {}
        process = start_zhihui(workdir, "--demo", **env)
        deployment = Deployment(backend=backend, database_url=url, processes=[process])
        try:
            deployment.sign_in(process.credentials)
            yield deployment
        finally:
            deployment.stop()
