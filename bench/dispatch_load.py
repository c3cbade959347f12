"""Load the dispatch server with N officers' websockets; print one JSON line per configuration.

Two figures per configuration (issue 5's "Benchmark" section):

- **directive delivery latency**: directives are issued at a steady rate (``POST /api/directives``)
  to random officers; latency is from just before the issuing POST to the directive's arrival on
  the officer's websocket, on the same machine clock. Target p99 <= 50 ms with 500 officers.
- **positions absorbed per second**: every officer sends positions over its websocket as fast as
  the server reads them; what counts is what the server *stored* with an acceptance time inside
  the window (read from the database afterwards), not what was sent. Target >= 2,000/s.

Configurations: ``sqlite`` is one ``zhihui up`` on SQLite with its in-process bus; ``redis`` is two
``zhihui up`` processes on one PostgreSQL database and one Redis, officers split over both,
directives issued on the first to officers connected to the second (every one crosses Redis).

People: the N officers and a commander are made once through the admin API and kept as a
template (a SQLite file, a PostgreSQL template database) under ``var/bench/dispatch/``, keyed by
the schema and N: making 500 argon2 hashes takes minutes here and measures nothing. Each run
starts from a copy. Tokens are issued by the bench with the server's own ``TokenService`` and
the JWT secret it gives the server (what ``/api/auth/login`` would return, without 500 argon2
verifications).

Examples::

    nice -n -15 .venv/bin/python bench/dispatch_load.py --quick
    nice -n -15 .venv/bin/python bench/dispatch_load.py                  # sqlite and redis, 500 officers
    nice -n -15 .venv/bin/python bench/dispatch_load.py --configs sqlite --profile /tmp/prof

See ``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import re
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import websockets  # noqa: E402

from bench.dispatch_officers import WorkerSpec, worker_main  # noqa: E402
from bench.machine import (  # noqa: E402
    code_tree,
    cpu_seconds,
    machine_times,
    memory_mb,
    summarize_profile,
    wait_for_quiet,
)
from tests.support import POSTGRES_URL, REDIS_URL, ZhihuiProcess, start_zhihui  # noqa: E402

CACHE = ROOT / "var" / "bench" / "dispatch"
TARGET_P99_MS = 50.0
TARGET_POSITIONS_PER_S = 2000.0
OFFICER_PREFIX = "bench-officer-"
COMMANDER = "bench-commander"
PASSWORD = "bench-password-1"


def log(message: str) -> None:
    print(f"[dispatch_load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 2)

    return {"p50": at(50), "p95": at(95), "p99": at(99), "max": round(ordered[-1], 2), "n": len(ordered)}


def tree() -> dict[str, Any]:
    return code_tree("dispatch_server", "zhihui")


class Window:
    """CPU, memory and machine load of the server processes over a measured window."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.cpu = [cpu_seconds(pid) for pid in pids]
        self.machine = machine_times()
        self.started = time.monotonic()

    def close(self) -> None:
        """The window's end: the figures are of the time up to here."""
        self.elapsed = time.monotonic() - self.started
        self.cpu_end = [cpu_seconds(pid) for pid in self.pids]
        self.machine_end = machine_times()
        self.rss = [memory_mb(pid) for pid in self.pids]

    def figures(self, load_cpu_s: float) -> dict[str, Any]:
        """With the officers' CPU over the window (``load_cpu_s``, read by them a little after)."""
        elapsed = self.elapsed
        busy0, total0 = self.machine
        busy1, total1 = self.machine_end
        cores = os.cpu_count() or 1
        server = [(end - before) / elapsed for end, before in zip(self.cpu_end, self.cpu, strict=True)]
        machine_cores = cores * (busy1 - busy0) / max(1, total1 - total0)
        return {
            "window_s": round(elapsed, 2),
            "server_cpu_cores": [round(c, 2) for c in server],
            "server_rss_mb": self.rss,
            "load_cpu_cores": round(load_cpu_s / elapsed, 2),
            "machine_busy_pct": round(100 * machine_cores / cores, 1),
            "other_cores": round(max(0.0, machine_cores - sum(server) - load_cpu_s / elapsed), 2),
        }


@contextlib.asynccontextmanager
async def profiling(folder: Path | None, name: str, pids: list[int], seconds: float) -> Any:
    """py-spy on each server process for ``seconds``; the summaries land in the yielded dict."""
    found: dict[str, Any] = {}
    if folder is None:
        yield found
        return
    folder.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    runs = []
    for n, pid in enumerate(pids):
        path = folder / f"{name}-{n}.txt"
        process = await asyncio.create_subprocess_exec(
            *[py_spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "100"],
            *["-f", "raw", "--nonblocking", "-o", str(path)],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        runs.append((path, process))
    try:
        yield found
    finally:
        for path, process in runs:
            try:
                await asyncio.wait_for(process.wait(), seconds + 30)
                found[path.name] = {"file": str(path), **summarize_profile(path, top=15)}
            except Exception as exc:
                process.kill()
                found[path.name] = {"error": repr(exc)}


# -- the people, made once -------------------------------------------------------------------------


def schema_fingerprint() -> str:
    """Tables and columns of the current code: a template made for another schema is not reused."""
    import dispatch_server.app  # noqa: F401  (imports every domain's models)
    from dispatch_server.db import Base

    described = sorted(f"{t.name}.{c.name}:{c.type}" for t in Base.metadata.sorted_tables for c in t.columns)
    return hashlib.sha256("\n".join(described).encode()).hexdigest()[:10]


def make_people(zhihui: ZhihuiProcess, officers: int) -> None:
    """The commander and the officers, through the admin API (argon2 hashes: slow on purpose)."""
    assert zhihui.admin_password is not None, "the template must start from an empty database"
    with httpx.Client(base_url=zhihui.base_url, timeout=60) as http:
        login = http.post("/api/auth/login", json={"username": "admin", "password": zhihui.admin_password})
        login.raise_for_status()
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        wanted = [(COMMANDER, "commander")] + [
            (f"{OFFICER_PREFIX}{n:04d}", "field_officer") for n in range(officers)
        ]
        for n, (username, role) in enumerate(wanted):
            body = {
                "username": username,
                "display_name": username.title(),
                "role": role,
                "password": PASSWORD,
            }
            http.post("/api/people", json=body).raise_for_status()
            if n % 50 == 49:
                log(f"  {n + 1}/{len(wanted)} people made")


def sqlite_template(cache: Path, officers: int) -> Path:
    path = cache / f"sqlite-{schema_fingerprint()}-{officers}.db"
    if path.exists():
        return path
    log(f"making {officers} officers in a SQLite template (once): {path}")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dispatch-template-") as folder:
        zhihui = start_zhihui(Path(folder), timeout=60)
        try:
            make_people(zhihui, officers)
        finally:
            zhihui.stop()
        partial = path.with_suffix(f".{os.getpid()}.partial")  # two runs at once: each its own
        shutil.copyfile(zhihui.database, partial)
        partial.rename(path)
    for stale in cache.glob(f"sqlite-*-{officers}.db"):  # made for an older schema
        if stale != path:
            stale.unlink()
    return path


async def _pg(url: str, statement: str, *args: Any) -> list[Any]:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=10)
    try:
        return list(await connection.fetch(statement, *args))
    finally:
        await connection.close()


def _database_url(name: str) -> str:
    return urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))


def postgres_template(officers: int) -> str:
    name = f"zhihui_bench_{schema_fingerprint()}_{officers}"
    if asyncio.run(_pg(POSTGRES_URL, "SELECT 1 FROM pg_database WHERE datname = $1", name)):
        return name
    building = f"{name}_building"
    log(f"making {officers} officers in a PostgreSQL template database (once): {name}")
    asyncio.run(_pg(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)'))
    asyncio.run(_pg(POSTGRES_URL, f'CREATE DATABASE "{building}"'))
    with tempfile.TemporaryDirectory(prefix="dispatch-template-") as folder:
        zhihui = start_zhihui(Path(folder), timeout=60, ZHIHUI_DATABASE_URL=_database_url(building))
        try:
            make_people(zhihui, officers)
        finally:
            zhihui.stop()
    asyncio.run(_pg(POSTGRES_URL, f'ALTER DATABASE "{building}" RENAME TO "{name}"'))
    rows = asyncio.run(
        _pg(POSTGRES_URL, "SELECT datname FROM pg_database WHERE datname LIKE 'zhihui_bench_%'")
    )
    for row in rows:  # templates made for an older schema
        if (
            re.fullmatch(rf"zhihui_bench_[0-9a-f]{{10}}_{officers}", row["datname"])
            and row["datname"] != name
        ):
            asyncio.run(_pg(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)'))
    return name


# -- the deployment under test ---------------------------------------------------------------------


@dataclass
class Deployment:
    name: str
    processes: list[ZhihuiProcess]
    people: dict[str, int]
    """username -> person id"""
    stored_count: Any
    """async (start, end) -> (rows accepted in [start, end), per whole second, accepted at or after end)"""
    secret: str
    database: str
    cleanup: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        for step in self.cleanup:
            with contextlib.suppress(Exception):
                step()


def _sqlite_stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def start_sqlite(workdir: Path, cache: Path, officers: int) -> Deployment:
    template = sqlite_template(cache, officers)
    (workdir / "var").mkdir(parents=True, exist_ok=True)
    database = workdir / "var" / "zhihui.db"
    shutil.copyfile(template, database)
    with sqlite3.connect(database) as db:
        people = dict(db.execute("SELECT username, id FROM person WHERE username LIKE 'bench-%'").fetchall())
    secret = secrets.token_urlsafe(32)
    zhihui = start_zhihui(workdir, timeout=60, ZHIHUI_AUTH__JWT_SECRET=secret)

    async def stored(start: float, end: float) -> tuple[int, list[int], int]:
        with sqlite3.connect(database, timeout=30) as db:
            window = (_sqlite_stamp(start), _sqlite_stamp(end))
            rows = db.execute(
                "SELECT substr(received_at, 1, 19), count(*) FROM position "
                "WHERE received_at >= ? AND received_at < ? GROUP BY 1 ORDER BY 1",
                window,
            ).fetchall()
            (late,) = db.execute(
                "SELECT count(*) FROM position WHERE received_at >= ?", window[1:]
            ).fetchone()
        return sum(n for _, n in rows), [n for _, n in rows], late

    return Deployment("sqlite", [zhihui], people, stored, secret, "sqlite (WAL), in-process bus")


def start_postgres(workdir: Path, officers: int, processes: int) -> Deployment:
    """``processes`` zhihui up on one PostgreSQL database; with two, over one Redis."""
    template = postgres_template(officers)
    name = f"zhihui_bench_run_{secrets.token_hex(6)}"
    asyncio.run(_pg(POSTGRES_URL, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    url = _database_url(name)
    cleanup = [lambda: asyncio.run(_pg(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))]
    secret = secrets.token_urlsafe(32)
    env = {"ZHIHUI_DATABASE_URL": url, "ZHIHUI_AUTH__JWT_SECRET": secret}
    if processes > 1:
        env |= {"ZHIHUI_REDIS_URL": REDIS_URL, "ZHIHUI_REDIS_PREFIX": f"zhihui-bench-{secrets.token_hex(6)}:"}
    started: list[ZhihuiProcess] = []
    try:
        for label in "ab"[:processes]:
            started.append(start_zhihui(workdir / label, timeout=60, **env))
    except Exception:
        for process in started:
            process.stop()
        for step in cleanup:
            step()
        raise
    rows = asyncio.run(_pg(url, "SELECT username, id FROM person WHERE username LIKE 'bench-%'"))
    people = {row["username"]: row["id"] for row in rows}

    async def stored(start: float, end: float) -> tuple[int, list[int], int]:
        window = (datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
        rows = await _pg(
            url,
            "SELECT date_trunc('second', received_at) AS s, count(*) AS n FROM position "
            "WHERE received_at >= $1 AND received_at < $2 GROUP BY 1 ORDER BY 1",
            *window,
        )
        late = await _pg(url, "SELECT count(*) AS n FROM position WHERE received_at >= $1", window[1])
        return sum(r["n"] for r in rows), [r["n"] for r in rows], late[0]["n"]

    if processes == 1:
        return Deployment(
            "postgresql", started, people, stored, secret, "postgresql, in-process bus", cleanup
        )
    return Deployment("redis", started, people, stored, secret, "postgresql + redis bus", cleanup)


def tokens(deployment: Deployment) -> dict[str, str]:
    """Access tokens as the server issues them (its TokenService, its secret)."""
    from dispatch_server.auth.tokens import TokenService
    from dispatch_server.people.models import Role

    service = TokenService(deployment.secret, 15)
    return {
        username: service.issue(person_id, Role.COMMANDER if username == COMMANDER else Role.FIELD_OFFICER)[0]
        for username, person_id in deployment.people.items()
    }


# -- the load ----------------------------------------------------------------------------------


class Workers:
    """Officer worker processes (see bench/dispatch_officers.py)."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes = []
        for spec in specs:
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(spec, child), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    async def answers(self, kind: str, timeout: float) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()

        def receive(pipe: Connection) -> Any:
            if not pipe.poll(timeout):
                raise TimeoutError(f"no {kind!r} from a worker in {timeout} s")
            return pipe.recv()

        got = await asyncio.gather(*(loop.run_in_executor(None, receive, pipe) for pipe in self.pipes))
        for answer in got:
            if answer[0] != kind:
                raise RuntimeError(f"worker answered {answer!r} instead of {kind!r}")
        return [answer[1] for answer in got]

    def tell(self, *command: Any) -> None:
        for pipe in self.pipes:
            pipe.send(command)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.tell("stop")
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()


class Wall:
    """The commander's websocket: counts what the command room is pushed."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.types: Counter[str] = Counter()
        self.position_pushes: list[tuple[float, list[int]]] = []
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, base_url: str, token: str) -> Wall:
        ws = await websockets.connect(base_url.replace("http", "ws") + "/ws", max_size=2**24)
        await ws.send(json.dumps({"type": "auth", "token": token}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        return cls(ws)

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                message = json.loads(raw)
                self.types[message["type"]] += 1
                if message["type"] == "positions":
                    self.position_pushes.append((time.time(), [p["person_id"] for p in message["positions"]]))

    def pushes_between(self, start: float, end: float) -> dict[str, Any]:
        pushes = [ids for at, ids in self.position_pushes if start <= at < end]
        per_officer = Counter(person for ids in pushes for person in ids)
        seconds = end - start
        return {
            "messages": len(pushes),
            "officers_per_message_max": max((len(ids) for ids in pushes), default=0),
            "max_per_officer_per_s": round(max(per_officer.values(), default=0) / seconds, 2),
        }

    async def close(self) -> None:
        self._task.cancel()
        await self.ws.close()


async def issue_directives(
    base_url: str, token: str, targets: list[int], rate: float, seconds: float
) -> list[tuple[int | None, int, float, float, int | str]]:
    """(directive id, target, time before the POST, time after it, status) of each directive
    issued at ``rate`` per second for ``seconds``, to random ``targets``."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, limits=limits) as http:

        async def one(n: int) -> tuple[int | None, int, float, float, int | str]:
            target = random.choice(targets)
            body = {"target_ids": [target], "text": f"Bench directive {n}", "ack_deadline_seconds": 3600}
            before = time.time()
            try:
                response = await http.post("/api/directives", json=body)
            except httpx.HTTPError as exc:  # a saturated machine: reported, not fatal
                return None, target, before, time.time(), type(exc).__name__
            after = time.time()
            directive_id = response.json()["id"] if response.status_code == 201 else None
            return directive_id, target, before, after, response.status_code

        began = time.monotonic()
        tasks = []
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(n)))
        return await asyncio.gather(*tasks)


async def run_config(args: argparse.Namespace, deployment: Deployment) -> dict[str, Any]:
    issued_on = deployment.processes[0]
    servers = [process.process.pid for process in deployment.processes]
    all_tokens = tokens(deployment)
    officers = sorted(
        (person_id, username) for username, person_id in deployment.people.items() if username != COMMANDER
    )[: args.officers]
    if len(officers) < args.officers:
        raise RuntimeError(f"the template has {len(officers)} officers, not {args.officers}")
    # Officer i connects to process i mod P; with two, directives go only to those on the second.
    placed = [
        (person_id, all_tokens[username], deployment.processes[i % len(deployment.processes)])
        for i, (person_id, username) in enumerate(officers)
    ]
    targets = [person_id for person_id, _, process in placed if process is deployment.processes[-1]]
    specs = [
        WorkerSpec(
            index=w,
            officers=[
                (person_id, token, process.base_url.replace("http", "ws") + "/ws")
                for person_id, token, process in placed[w :: args.workers]
            ],
            acknowledge=not args.no_ack,
        )
        for w in range(args.workers)
    ]
    began = time.monotonic()
    workers = Workers(specs)
    line: dict[str, Any] = {
        "config": {
            "name": deployment.name,
            "processes": len(deployment.processes),
            "database_and_bus": deployment.database,
            "officers": args.officers,
            "load_workers": args.workers,
            "officers_acknowledge": not args.no_ack,
        }
    }
    try:
        connected = await workers.answers("ready", timeout=300)
        setup_s = round(time.monotonic() - began, 1)
        log(f"{deployment.name}: {args.officers} officers connected in {setup_s} s")
        wall = await Wall.open(issued_on.base_url, all_tokens[COMMANDER])
        rss_before = [memory_mb(pid) for pid in servers]

        # 1. Directives at a steady rate, from the issuing POST to the officer's websocket.
        await issue_directives(issued_on.base_url, all_tokens[COMMANDER], targets, 10, 1)  # warm-up
        await asyncio.sleep(1)
        workers.tell("receipts")  # forget the warm-up's
        await workers.answers("receipts", timeout=30)
        window = Window(servers)
        async with profiling(
            args.profile, f"{deployment.name}-directives", servers, args.directive_seconds
        ) as prof:
            issued = await issue_directives(
                issued_on.base_url,
                all_tokens[COMMANDER],
                targets,
                args.directive_rate,
                args.directive_seconds,
            )
        window.close()
        expected = {d for d, *_ in issued if d is not None}
        received: dict[int, float] = {}
        receipts: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while True:  # until the last ones have arrived (or 10 s: then they are missing)
            workers.tell("receipts")
            got = await workers.answers("receipts", timeout=60)
            receipts.extend(got)
            for answer in got:
                for directive_id, at in answer["received"]:
                    received.setdefault(directive_id, at)
            if expected <= received.keys() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        directive_load = window.figures(sum(r["cpu_s"] for r in receipts))
        latencies = [
            (received[d] - before) * 1000 for d, _, before, _, _ in issued if d is not None and d in received
        ]
        statuses = Counter(status for *_, status in issued)
        ws_errors = Counter(e for r in receipts for e in r["errors"])
        latency = percentiles(latencies)
        line["directives"] = {
            "rate_per_s": args.directive_rate,
            "duration_s": args.directive_seconds,
            "issued": len(issued),
            "post_status": dict(statuses),
            "delivered": len(latencies),
            "missing": sum(1 for d, *_ in issued if d is not None and d not in received),
            "latency_ms": latency,
            "post_ms": percentiles([(after - before) * 1000 for _, _, before, after, _ in issued]),
            "delivered_before_post_returned": sum(
                1 for d, _, _, after, _ in issued if d is not None and d in received and received[d] < after
            ),
            "cross_process": len(deployment.processes) > 1,
            "target_p99_ms": TARGET_P99_MS,
            "met": bool(latencies) and latency.get("p99", 1e9) <= TARGET_P99_MS,
            "officer_errors": dict(ws_errors.most_common(5)),
            **directive_load,
            "load_loop_lag_ms": percentiles([x for r in receipts for x in r["loop_lag_ms"]]),
        }
        if prof:
            line["directives"]["profile"] = _profile_line(prof)
        log(f"{deployment.name}: directives {json.dumps(line['directives']['latency_ms'])}")

        # 2. Positions as fast as the server takes them; counted from what it stored.
        start = time.time() + 0.5
        end = start + args.position_seconds
        window = Window(servers)
        async with profiling(
            args.profile, f"{deployment.name}-positions", servers, args.position_seconds + 0.5
        ) as prof:
            workers.tell("positions", start, end, args.position_rate)
            sent = await workers.answers("positions", timeout=args.position_seconds + 120)
        window.close()
        position_load = window.figures(sum(s["cpu_s"] for s in sent))
        total_sent = sum(s["sent"] for s in sent)
        seen, changed = -1, time.monotonic()
        while True:  # accepted fixes are stored within a second: until the count stops growing
            await asyncio.sleep(0.3)
            stored, per_second, late = await deployment.stored_count(start, end)
            if stored + late != seen:
                seen, changed = stored + late, time.monotonic()
            if seen >= total_sent or time.monotonic() - changed > 2.0:
                break
        workers.tell("receipts")
        errors = Counter(e for r in await workers.answers("receipts", timeout=60) for e in r["errors"])
        line["positions"] = {
            "duration_s": args.position_seconds,
            "offered_per_s": args.position_rate * args.officers,
            "sent": sum(s["sent"] for s in sent),
            "stored_in_window": stored,
            "stored_per_s": round(stored / args.position_seconds, 1),
            "stored_per_server_cpu_s": round(
                stored / max(1e-9, sum(position_load["server_cpu_cores"]) * position_load["window_s"]), 1
            ),
            "stored_per_whole_s": {
                "min": min(per_second[1:-1] or per_second or [0]),
                "max": max(per_second or [0]),
            },
            "accepted_after_window": late,
            "target_per_s": TARGET_POSITIONS_PER_S,
            "met": stored / args.position_seconds >= TARGET_POSITIONS_PER_S,
            "refused": dict(errors.most_common(5)),
            "wall_pushes": wall.pushes_between(start, end),
            **position_load,
            "load_loop_lag_ms": percentiles([x for s in sent for x in s["loop_lag_ms"]]),
        }
        if prof:
            line["positions"]["profile"] = _profile_line(prof)
        log(f"{deployment.name}: positions stored {line['positions']['stored_per_s']}/s")
        line["server_rss_mb"] = {"before": rss_before, "after": [memory_mb(pid) for pid in servers]}
        line["load"] = {
            "setup_s": setup_s,
            "connect_s": [c["connect_s"] for c in connected],
            "wall_messages": dict(wall.types),
        }
        await wall.close()
    finally:
        workers.stop()
    return line


def _profile_line(profiles: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {"file": p.get("file"), "samples": p.get("samples"), "self_pct_top": p.get("self_pct", [])[:12]}
        for name, p in profiles.items()
    }


@contextlib.contextmanager
def deployed(name: str, args: argparse.Namespace, workdir: Path) -> Iterator[Deployment]:
    if name == "sqlite":
        deployment = start_sqlite(workdir, args.cache, args.officers)
    else:
        deployment = start_postgres(workdir, args.officers, processes=2 if name == "redis" else 1)
    try:
        yield deployment
    finally:
        deployment.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs",
        default="sqlite,redis",
        help="comma-separated: sqlite (one process), postgresql (one process), redis (two on PostgreSQL)",
    )
    parser.add_argument("--officers", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4, help="officer load processes")
    parser.add_argument("--directive-rate", type=float, default=20.0, help="directives issued per second")
    parser.add_argument("--directive-seconds", type=float, default=20.0)
    parser.add_argument("--position-seconds", type=float, default=10.0)
    parser.add_argument(
        "--position-rate",
        type=float,
        default=20.0,
        help="positions each officer sends per second (offered load)",
    )
    parser.add_argument("--no-ack", action="store_true", help="officers do not acknowledge directives")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the server(s) during each window, into this folder"
    )
    parser.add_argument(
        "--cache", type=Path, default=CACHE, help="where the SQLite template of people is kept"
    )
    parser.add_argument("--keep", action="store_true", help="keep each configuration's folder (server logs)")
    parser.add_argument(
        "--quiet-pct", type=float, default=25.0, help="wait for the machine to be under this busy"
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=60.0, help="...for at most this many seconds (0: no wait)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 officers, sqlite, a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.officers, args.workers = min(args.officers, 5), 1
        args.directive_rate, args.directive_seconds, args.position_seconds = 10.0, 1.0, 1.0
        args.configs, args.quiet_wait = "sqlite", 0.0
    args.workers = max(1, min(args.workers, args.officers))
    for name in args.configs.split(","):
        if name not in ("sqlite", "postgresql", "redis"):
            parser.error(f"unknown configuration {name!r}")
        workdir = Path(tempfile.mkdtemp(prefix=f"dispatch-load-{name}-"))
        try:
            with deployed(name, args, workdir) as deployment:
                busy = (
                    round(wait_for_quiet(args.quiet_pct, args.quiet_wait, log=log), 1)
                    if args.quiet_wait > 0
                    else None
                )
                line = asyncio.run(run_config(args, deployment))
                line["machine_busy_before_pct"] = busy
            line["tree"] = tree()
            line["niceness"] = os.nice(0)
            print(json.dumps(line), flush=True)
        finally:
            if args.keep:
                log(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
