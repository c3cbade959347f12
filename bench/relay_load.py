"""Load the media relay with N publishers and M viewers each; print one JSON line per configuration.

The relay under test runs in its own process: ``zhihui relay``, a relay node reporting to a
dispatch server (``zhihui up --demo``) in a process of its own, so that the relay's CPU figure is
the relay's alone (``--in-process-relay``: the relay inside ``zhihui up``, as one machine runs it,
its CPU counted with the dispatch server's SQL, rules and HTTP), in temporary folders (ICE on
127.0.0.1, recording on), or ``bench/stock_relay.py`` (aiortc's stock ``MediaRelay``, decode plus
re-encode per viewer). Publishers and viewers run in worker processes (``--per-worker``
publishers and their viewers each, one asyncio loop per process); see ``bench/peers.py``.

Examples::

    .venv/bin/python bench/relay_load.py --quick
    .venv/bin/python bench/relay_load.py                      # N = 1, 8, 16, 32 and stock 1, 4
    .venv/bin/python bench/relay_load.py --configs zhihui:8 --duration 60 --profile /tmp/prof

See ``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import httpx  # noqa: E402

from bench.machine import (  # noqa: E402
    code_tree,
    cpu_seconds,
    cpu_split,
    machine_times,
    memory_mb,
    python_speed_ms,
    summarize_profile,
    wait_for_quiet,
)
from bench.peers import WorkerSpec, match_frames, mean, percentile, worker_main  # noqa: E402
from tests.support import LOOPBACK, free_port, start_relay_node, start_zhihui  # noqa: E402

CLIP = Path("/work/shared/media/bodycam-720p15-vp8.webm")
DEFAULT_CONFIGS = "zhihui:1,zhihui:4,zhihui:8,zhihui:16,zhihui:32,stock:1,stock:4"
QUICK_CONFIGS = "zhihui:1,zhihui:2,stock:1"


def log(message: str) -> None:
    print(f"[relay_load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- /proc -----------------------------------------------------------------------------------------


def relay_tree(relay_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Which relay code ran: the commit, and whether its folders had uncommitted changes. The
    servers import this checkout, or the first folder of a ``PYTHONPATH`` given in ``relay_env``
    (``--relay-env PYTHONPATH=<a worktree of an older commit>`` runs that commit's relay under
    this load)."""
    path = (relay_env or {}).get("PYTHONPATH", "").split(os.pathsep)[0]
    root = Path(path) if path else ROOT
    return {**code_tree("media_relay", "zhihui", "dispatch_server", root=root), "path": str(root)}


# -- relays under test ---------------------------------------------------------------------------


@dataclass
class Target:
    mode: str
    pid: int
    base_url: str
    streams_url: str
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    recordings: Path | None = None
    stream_ids: list[str] = field(default_factory=list)
    stop: Any = None
    stats_url: str | None = None
    dispatch_pid: int | None = None
    """The dispatch server's process, when the relay runs apart from it (its CPU is not the relay's)."""


def _join(base: str, url: str) -> str:
    return str(httpx.URL(base + "/").join(url))


def start_zhihui_target(workdir: Path, n: int, env: dict[str, str], separate: bool = True) -> Target:
    """``zhihui up --demo``; with ``separate``, a relay node (``zhihui relay``) of its own beside it,
    which the publishers and viewers use (``env`` goes to both)."""
    relay_port = free_port()
    secret = os.urandom(18).hex()
    node_env = {
        "ZHIHUI_RELAY_NODE__IN_PROCESS": "false",
        "ZHIHUI_RELAY_NODE__SECRET": secret,
        "ZHIHUI_RELAY__PUBLIC_URL": f"http://{LOOPBACK}:{relay_port}",
    }
    zhihui = start_zhihui(
        workdir / "dispatch" if separate else workdir,
        "--demo",
        timeout=60,
        **({**env, **node_env} if separate else env),
    )
    relay = None
    try:
        if separate:
            relay = start_relay_node(
                workdir / "relay", relay_port, dispatch_url=zhihui.base_url, secret=secret, timeout=60, **env
            )
        base = zhihui.base_url
        with httpx.Client(base_url=base, timeout=30) as http:
            officer = http.post(
                "/api/auth/login", json={"username": "officer1", "password": zhihui.credentials["officer1"]}
            )
            officer.raise_for_status()
            officer_auth = {"Authorization": f"Bearer {officer.json()['access_token']}"}
            grants = []
            for i in range(n):
                response = http.post(
                    "/api/grants/publish", json={"device": f"bench{i}"}, headers=officer_auth
                )
                response.raise_for_status()
                grants.append(response.json())
            commander = http.post(
                "/api/auth/login",
                json={"username": "commander", "password": zhihui.credentials["commander"]},
            )
            commander.raise_for_status()
            commander_auth = {"Authorization": f"Bearer {commander.json()['access_token']}"}
            stream_ids = [g["stream_id"] for g in grants]
            view = http.post("/api/grants/view", json={"stream_ids": stream_ids}, headers=commander_auth)
            view.raise_for_status()
            view_body = view.json()
    except Exception:
        if relay is not None:
            relay.stop()
        zhihui.stop()
        raise
    whep = {s["stream_id"]: s["whep_url"] for s in view_body["streams"]}
    endpoints = [
        {
            "index": i,
            "whip_url": _join(base, g["whip_url"]),
            "whip_token": g["grant"],
            "whep_url": _join(base, whep[g["stream_id"]]),
            "whep_token": view_body["grant"],
        }
        for i, g in enumerate(grants)
    ]
    if relay is None:
        return Target(
            mode="zhihui",
            pid=zhihui.process.pid,
            base_url=base,
            streams_url=base + "/relay/streams",
            stats_url=base + "/relay/stats",
            endpoints=endpoints,
            recordings=zhihui.recordings,
            stream_ids=stream_ids,
            stop=zhihui.stop,
        )
    node = relay

    def stop() -> None:
        node.stop()  # first: its last events still reach the dispatch server
        zhihui.stop()

    return Target(
        mode="zhihui",
        pid=node.process.pid,
        base_url=node.base_url,
        streams_url=node.base_url + "/streams",
        stats_url=node.base_url + "/stats",
        endpoints=endpoints,
        recordings=node.recordings,
        stream_ids=stream_ids,
        stop=stop,
        dispatch_pid=zhihui.process.pid,
    )


def start_stock_target(workdir: Path, n: int, env: dict[str, str]) -> Target:
    port = free_port()
    log_file = (workdir / "stock_relay.log").open("w")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "stock_relay.py"), "--port", str(port)],
        cwd=workdir,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    base = f"http://{LOOPBACK}:{port}"

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        log_file.close()

    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            stop()
            raise RuntimeError(f"stock_relay exited: {(workdir / 'stock_relay.log').read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        if time.monotonic() > deadline:
            stop()
            raise RuntimeError("stock_relay did not answer in 30 s")
        time.sleep(0.1)
    endpoints = [
        {
            "index": i,
            "whip_url": f"{base}/whip/s{i}",
            "whip_token": "none",
            "whep_url": f"{base}/whep/s{i}",
            "whep_token": "none",
        }
        for i in range(n)
    ]
    return Target(
        mode="stock",
        pid=process.pid,
        base_url=base,
        streams_url=base + "/streams",
        endpoints=endpoints,
        stop=stop,
    )


# -- recordings ----------------------------------------------------------------------------------


def count_recorded(recordings: Path, stream_id: str) -> dict[str, int]:
    """Video packets in a stream's segments (demuxed, not decoded), and the manifest's own count."""
    packets = 0
    manifest_frames = 0
    for folder in recordings.glob(f"*/*/*/{stream_id}"):
        for segment in sorted(folder.glob("*.mkv")):
            try:
                with av.open(str(segment)) as container:
                    if container.streams.video:
                        video = container.streams.video[0]
                        packets += sum(1 for p in container.demux(video) if p.size)
            except av.FFmpegError:
                continue
        manifest = folder / "manifest.jsonl"
        if manifest.exists():
            for line in manifest.read_text().splitlines():
                entry = json.loads(line)
                if entry.get("type") == "segment":
                    manifest_frames += int(entry.get("frames", {}).get("video", 0))
    return {"packets": packets, "manifest": manifest_frames}


# -- the relay's own statistics ----------------------------------------------------------------

STREAM_COUNTERS = (
    "packets_lost",
    "packets_recovered",
    "nacks_sent",
    "holes_skipped",
    "keyframe_requests",
    "plis_sent",
)
VIEWER_COUNTERS = ("frames_sent", "frames_dropped", "overflows")


async def fetch_stats(url: str | None) -> dict[str, Any] | None:
    """Totals of the relay's ``/relay/stats`` counters over all streams and viewers, and health flags."""
    if url is None:
        return None
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            body = (await http.get(url)).json()
    except (httpx.HTTPError, ValueError):
        return None
    totals: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    for stream in body.get("streams", []) if isinstance(body, dict) else []:
        for key in STREAM_COUNTERS:
            if isinstance(stream.get(key), int):
                totals[key] += stream[key]
        video = stream.get("video") or {}
        if isinstance(video.get("frames"), int):
            totals["video_frames_in"] += video["frames"]
        for viewer in stream.get("viewers") or []:
            for key in VIEWER_COUNTERS:
                if isinstance(viewer.get(key), int):
                    totals[f"viewer_{key}"] += viewer[key]
        for flag in stream.get("health") or []:
            flags[flag] += 1
    streams = len(body.get("streams", [])) if isinstance(body, dict) else 0
    lag = body.get("event_loop_lag") if isinstance(body, dict) else None
    return {"totals": dict(totals), "health": dict(flags), "streams": streams, "loop_lag": lag}


def loop_lag_over(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """The relay's own event-loop lag over the window, from its cumulative histogram: the bucket
    bound that p50 and p99 fall under (so "<= 20" means p99 was at most 20 ms)."""
    first = (before or {}).get("loop_lag")
    last = (after or {}).get("loop_lag")
    if not first or not last:
        return {"measured": False, "note": "the relay did not report its event-loop lag"}
    counts = [b - a for a, b in zip(first["counts"], last["counts"], strict=True)]
    n = counts[-1]
    bounds = [*last["buckets_ms"], None]

    def bound(q: float) -> float | None:
        return next((b for b, c in zip(bounds, counts, strict=True) if c >= q * n), None)

    return {
        "measured": True,
        "samples": n,
        "interval_ms": last["interval_ms"],
        "p50_at_most_ms": bound(0.5),
        "p99_at_most_ms": bound(0.99),
        "mean_ms": round((last["total_ms"] - first["total_ms"]) / n, 2) if n else None,
        "over_20ms_pct": round(100 * (n - counts[bounds.index(20.0)]) / n, 2) if n else None,
        "last_minute": {k: last[f"recent_{k}_ms"] for k in ("p50", "p99", "max")},
    }


def stats_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, int] | None:
    if before is None or after is None:
        return None
    keys = set(before["totals"]) | set(after["totals"])
    return {k: after["totals"].get(k, 0) - before["totals"].get(k, 0) for k in sorted(keys)}


# -- profiling -----------------------------------------------------------------------------------


# -- one configuration ---------------------------------------------------------------------------


async def _get(results: multiprocessing.queues.Queue[Any], timeout: float) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, results.get, True, timeout)


async def _http_probe(url: str, until: float, samples: list[float]) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        while time.monotonic() < until:
            started = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):
                await http.get(url)
                samples.append((time.monotonic() - started) * 1000)
            await asyncio.sleep(0.2)


async def _run_churn(
    pid: int,
    commands: multiprocessing.queues.Queue[Any],
    results: multiprocessing.queues.Queue[Any],
    cycles: int,
) -> dict[str, Any]:
    """RSS of the relay before and after ``cycles`` viewer join/leave cycles on publisher 0."""
    before = memory_mb(pid)["rss"]
    log(f"churn: {cycles} viewer join/leave cycles")
    commands.put(("churn", 0, cycles))
    while True:
        kind, w, body = await _get(results, 60 + 10 * cycles)
        if kind == "churn":
            break
        if kind == "error":
            raise RuntimeError(f"worker {w} failed: {body}")
    await asyncio.sleep(3)
    after = memory_mb(pid)["rss"]
    return {
        **body,
        "seconds": round(body["seconds"], 1),
        "rss_before_mb": before,
        "rss_after_mb": after,
        "rss_growth_pct": round(100 * (after - before) / before, 2),
    }


def _stats(values: list[float], digits: int = 1) -> dict[str, float | int | None]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, digits)

    return {
        "p50": r(percentile(values, 50)),
        "p95": r(percentile(values, 95)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values) if values else None),
        "n": len(values),
    }


async def run_config(mode: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"relay_load-{mode}-{n}-"))
    busy_before = wait_for_quiet(args.quiet_pct, args.quiet_wait, log=log)
    python_ms = python_speed_ms()
    env = dict(item.split("=", 1) for item in args.relay_env)
    tree = relay_tree(env)
    log(f"{mode} N={n}: starting the relay in {workdir}")
    if mode == "zhihui":
        target = start_zhihui_target(workdir, n, env, separate=not args.in_process_relay)
    else:
        target = start_stock_target(workdir, n, env)
    errors: list[str] = []
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.queues.Queue[Any] = context.Queue()
    per_worker = max(1, args.per_worker)
    groups = [target.endpoints[i : i + per_worker] for i in range(0, n, per_worker)]
    commands = [context.Queue() for _ in groups]
    owner = {entry["index"]: w for w, group in enumerate(groups) for entry in group}
    processes = []
    outputs: dict[int, dict[str, Any]] = {}
    profile: dict[str, Any] | None = None
    relay_streams: Any = None
    try:
        for w, group in enumerate(groups):
            spec = WorkerSpec(
                worker=w,
                clip_path=str(args.clip),
                publishers=group,
                viewers_per_publisher=args.viewers,
                honour_keyframe_requests=not args.ignore_pli,
            )
            process = context.Process(target=worker_main, args=(spec, commands[w], results), daemon=True)
            process.start()
            processes.append(process)
        setup_started = time.monotonic()
        ready = 0
        while ready < len(groups):
            kind, w, body = await _get(results, 180)
            if kind == "ready":
                ready += 1
                errors += [f"worker {w}: {e}" for e in body["errors"]]
            elif kind == "error":
                raise RuntimeError(f"worker {w} failed: {body}")
        setup_s = time.monotonic() - setup_started
        log(f"{mode} N={n}: {n} publishers and {n * args.viewers} viewers connected in {setup_s:.1f} s")
        await asyncio.sleep(args.warmup)

        load_pids = [p.pid for p in processes if p.pid is not None] + [os.getpid()]
        profiler = None
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            profile_path = args.profile / f"{mode}-{n}.txt"
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            profiler = await asyncio.create_subprocess_exec(
                *[py_spy, "record", "-p", str(target.pid), "-d", str(int(args.duration)), "-r", "100"],
                *["-f", "raw", "--nonblocking", "-o", str(profile_path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        stats0 = await fetch_stats(target.stats_url)
        t0 = time.monotonic()
        relay_user0, relay_system0 = cpu_split(target.pid)
        dispatch_cpu0 = cpu_seconds(target.dispatch_pid) if target.dispatch_pid else 0.0
        load_cpu0 = sum(cpu_seconds(pid) for pid in load_pids)
        busy0, total0 = machine_times()
        memory0 = memory_mb(target.pid)
        probe_ms: list[float] = []
        await _http_probe(target.streams_url, t0 + args.duration, probe_ms)
        await asyncio.sleep(max(0.0, t0 + args.duration - time.monotonic()))
        t1 = time.monotonic()
        relay_user, relay_system = cpu_split(target.pid)
        relay_user, relay_system = relay_user - relay_user0, relay_system - relay_system0
        relay_cpu = relay_user + relay_system
        dispatch_cpu = cpu_seconds(target.dispatch_pid) - dispatch_cpu0 if target.dispatch_pid else None
        load_cpu = sum(cpu_seconds(pid) for pid in load_pids) - load_cpu0
        busy1, total1 = machine_times()
        memory1 = memory_mb(target.pid)
        stats1 = await fetch_stats(target.stats_url)
        if profiler is not None:
            try:
                await asyncio.wait_for(profiler.wait(), 30)
                profile = {"file": str(profile_path), **summarize_profile(profile_path)}
            except (TimeoutError, OSError) as exc:
                profiler.kill()
                errors.append(f"py-spy: {exc!r}")
        async with httpx.AsyncClient(timeout=10) as http:
            with contextlib.suppress(httpx.HTTPError):
                relay_streams = (await http.get(target.streams_url)).json()

        # A fresh viewer joins during steady state (after the CPU window, so it does not count).
        probes: list[dict[str, Any]] = []
        for index in sorted({0, n // 2, n - 1})[: args.probes]:
            commands[owner[index]].put(("probe", index))
            while True:
                kind, w, body = await _get(results, 60)
                if kind == "probe":
                    probes.append(body)
                    break
                if kind == "error":
                    raise RuntimeError(f"worker {w} failed: {body}")
            await asyncio.sleep(1.0)

        churn: dict[str, Any] | None = None
        if args.churn:
            churn = await _run_churn(target.pid, commands[owner[0]], results, args.churn)
        await asyncio.sleep(1.0)  # frames sent at the end of the window are still on their way
        stats_end = await fetch_stats(target.stats_url)
        for command in commands:
            command.put(("stop",))
        while len(outputs) < len(groups):
            kind, w, body = await _get(results, 120)
            if kind == "result":
                outputs[w] = body
                errors += [f"worker {w}: {e}" for e in body["errors"] if e not in errors]
            elif kind == "error":
                raise RuntimeError(f"worker {w} failed: {body}")
        for process in processes:
            process.join(30)

        recorded: list[dict[str, int]] = []
        if target.recordings is not None:
            deadline = time.monotonic() + 30
            async with httpx.AsyncClient(timeout=5) as http:
                while time.monotonic() < deadline:  # publishers gone: wait for the segments to be sealed
                    with contextlib.suppress(httpx.HTTPError):
                        if not (await http.get(target.streams_url)).json():
                            break
                    await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)
            recorded = [count_recorded(target.recordings, sid) for sid in target.stream_ids]
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        target.stop()

    return figures(
        mode=mode,
        n=n,
        args=args,
        window=(t0, t1),
        outputs=outputs,
        relay_cpu=relay_cpu,
        relay_system=relay_system,
        load_cpu=load_cpu,
        machine=((busy1 - busy0) / max(1, total1 - total0)),
        memory=(memory0, memory1),
        probe_ms=probe_ms,
        probes=probes,
        recorded=recorded,
        setup_s=setup_s,
        workers=len(groups),
        errors=errors,
        profile=profile,
        relay_streams=relay_streams,
        relay_stats=(stats0, stats1, stats_end),
        churn=churn,
        extra={
            "relay_env": env,
            "relay_tree": tree,
            "machine_busy_before_pct": round(busy_before, 1),
            "machine_python_ms": python_ms,
            **(
                {
                    "relay_process": "zhihui relay (the relay alone)",
                    "dispatch_cpu_s": round(dispatch_cpu, 3) if dispatch_cpu is not None else None,
                }
                if target.dispatch_pid
                else {"relay_process": "zhihui up (relay and dispatch server)"}
                if mode == "zhihui"
                else {}
            ),
        },
        workdir=workdir,
    )


def figures(
    *,
    mode: str,
    n: int,
    args: argparse.Namespace,
    window: tuple[float, float],
    outputs: dict[int, dict[str, Any]],
    relay_cpu: float,
    relay_system: float,
    load_cpu: float,
    machine: float,
    memory: tuple[dict[str, float], dict[str, float]],
    probe_ms: list[float],
    probes: list[dict[str, Any]],
    recorded: list[dict[str, int]],
    setup_s: float,
    workers: int,
    errors: list[str],
    profile: dict[str, Any] | None,
    relay_streams: Any,
    relay_stats: tuple[dict[str, Any] | None, ...],
    churn: dict[str, Any] | None,
    workdir: Path,
    extra: dict[str, Any],
) -> dict[str, Any]:
    t0, t1 = window
    duration = t1 - t0
    sent_by_publisher = {p["index"]: p["sent"] for out in outputs.values() for p in out["publishers"]}
    keyframe_requests = sum(
        sum(1 for t in p["keyframe_requests"] if t0 <= t < t1)
        for out in outputs.values()
        for p in out["publishers"]
    )
    in_window = {
        index: {i for i, t in enumerate(sent) if t0 <= t < t1} for index, sent in sent_by_publisher.items()
    }
    sent_counts = [len(s) for s in in_window.values()]
    received_counts: list[int] = []
    received_pct: list[float] = []
    latencies: list[float] = []
    viewer_p95: list[float] = []
    match_status: Counter[str] = Counter()
    arrival_unknown = 0
    for out in outputs.values():
        for viewer in out["viewers"]:
            sent = sent_by_publisher[viewer["publisher"]]
            frames = [tuple(f) for f in viewer["frames"]]
            indices, status = match_frames(frames, sent)  # type: ignore[arg-type]
            match_status[status] += 1
            arrival_unknown += viewer.get("arrival_unknown", 0)
            wanted = in_window[viewer["publisher"]]
            got = {i for i in indices if i is not None and i in wanted}
            received_counts.append(len(got))
            received_pct.append(100 * len(got) / len(wanted) if wanted else 0.0)
            mine = [
                (arrived - sent[i]) * 1000
                for (_, arrived, _), i in zip(frames, indices, strict=True)
                if i is not None and i in wanted
            ]
            latencies += mine
            if mine:
                viewer_p95.append(percentile(mine, 95) or 0.0)
    lag = [ms * 1000 for out in outputs.values() for t, ms in out["loop_lag"] if t0 <= t < t1]
    total_sent = [len(sent_by_publisher[i]) for i in sorted(sent_by_publisher)]
    ttff = [p["ttff_ms"] for p in probes if "ttff_ms" in p]
    line: dict[str, Any] = {
        "bench": "relay_load",
        "config": {"mode": mode, "publishers": n, "viewers_per_publisher": args.viewers},
        "recording": mode == "zhihui",
        "duration_s": round(duration, 1),
        "relay_cpu_s_per_publisher_minute": round(relay_cpu / (n * duration / 60), 3),
        "relay_cpu_cores": round(relay_cpu / duration, 3),
        "relay_system_share": round(relay_system / relay_cpu, 3) if relay_cpu else None,
        "frames_sent_per_publisher": {
            "min": min(sent_counts, default=0),
            "mean": round(mean([float(c) for c in sent_counts]) or 0, 1),
            "fps": round((mean([float(c) for c in sent_counts]) or 0) / duration, 2),
        },
        "frames_received_per_viewer": {
            "min": min(received_counts, default=0),
            "mean": round(mean([float(c) for c in received_counts]) or 0, 1),
            "min_pct": round(min(received_pct, default=0), 2),
            "mean_pct": round(mean(received_pct) or 0, 2),
            "viewers": len(received_counts),
            "matched": dict(match_status),
            "arrival_unknown": arrival_unknown,
        },
        "frames_recorded": None,
        "latency_ms": {**_stats(latencies), "worst_viewer_p95": round(max(viewer_p95, default=0), 1)},
        "time_to_first_frame_ms": {
            "p50": None if not ttff else round(percentile(ttff, 50) or 0, 1),
            "max": None if not ttff else round(max(ttff), 1),
            "samples": [round(x, 1) for x in ttff],
            "answer_ms": [round(p["answer_ms"], 1) for p in probes if "answer_ms" in p],
            "failed": [p["error"] for p in probes if "error" in p],
        },
        "relay_rss_mb": {"start": memory[0]["rss"], "end": memory[1]["rss"], "peak": memory[1]["peak"]},
        "event_loop_lag": {
            **loop_lag_over(relay_stats[0], relay_stats[1]),
            "http_probe_ms": _stats(probe_ms),
        },
        "publisher_keyframe_requests": keyframe_requests,
        "load": {
            "workers": workers,
            "publishers_per_worker": args.per_worker,
            "cpu_cores": round(load_cpu / duration, 3),
            "driver_loop_lag_ms": _stats(lag),
            "machine_busy_pct": round(100 * machine, 1),
            "other_cores": round(
                max(0.0, machine * (os.cpu_count() or 1) - (relay_cpu + load_cpu) / duration), 3
            ),
            "cores": os.cpu_count(),
            "setup_s": round(setup_s, 1),
        },
        "errors": errors[:20],
        **extra,
    }
    if recorded:
        packets = sum(r["packets"] for r in recorded)
        per_stream = [100 * r["packets"] / s for r, s in zip(recorded, total_sent, strict=True) if s]
        line["frames_recorded"] = {
            "total": packets,
            "manifest_total": sum(r["manifest"] for r in recorded),
            "sent_total": sum(total_sent),
            "pct": round(100 * packets / max(1, sum(total_sent)), 2),
            "min_pct_per_stream": round(min(per_stream, default=0), 2),
        }
    if isinstance(relay_streams, list) and mode == "zhihui":
        line["relay_streams_live"] = len(relay_streams)
    if churn is not None:
        line["viewer_churn"] = churn
    stats0, stats1, stats_end = relay_stats
    if stats1 is not None:
        line["relay_stats"] = {
            "window": stats_delta(stats0, stats1),
            "session_before_leaving": None if stats_end is None else stats_end["totals"],
            "streams_before_leaving": None if stats_end is None else stats_end["streams"],
            "health_flags_end_of_window": stats1["health"],
        }
    if profile is not None:
        line["profile"] = {
            "file": profile["file"],
            "samples": profile["samples"],
            "self_pct_top": profile["self_pct"][:12],
        }
        log(f"profile {profile['file']}:\n" + json.dumps(profile, indent=1))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        line["workdir"] = str(workdir)
        (workdir / "raw.json").write_text(json.dumps({"window": window, "outputs": outputs}))
    return line


# -- main ----------------------------------------------------------------------------------------


def parse_configs(text: str) -> list[tuple[str, int]]:
    configs = []
    for item in text.split(","):
        mode, _, count = item.strip().partition(":")
        if mode not in ("zhihui", "stock") or not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"bad configuration {item!r}: use zhihui:N or stock:N")
        configs.append((mode, int(count)))
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description="Relay load benchmark: one JSON line per configuration.")
    parser.add_argument(
        "--configs",
        type=parse_configs,
        default=None,
        help=f"comma-separated mode:N (default {DEFAULT_CONFIGS})",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="measured window per configuration, s (30)"
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_CONFIGS}, 8 s each")
    parser.add_argument("--viewers", type=int, default=2, help="viewers per publisher (M)")
    parser.add_argument(
        "--per-worker", type=int, default=4, help="publishers (with their viewers) per worker"
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="s after all peers connected, before measuring"
    )
    parser.add_argument("--probes", type=int, default=3, help="fresh viewers joined for time to first frame")
    parser.add_argument(
        "--ignore-pli",
        action="store_true",
        help="publishers ignore keyframe requests, like aiortc's own packet senders",
    )
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy the relay during each window, raw stacks into this folder",
    )
    parser.add_argument(
        "--quiet-pct",
        type=float,
        default=25.0,
        help="before each configuration, wait for the machine to be under this %% busy",
    )
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="... for at most this many s")
    parser.add_argument(
        "--churn",
        type=int,
        default=0,
        help="after the window, this many viewer join/leave cycles (RSS growth)",
    )
    parser.add_argument(
        "--relay-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for zhihui up (and zhihui relay), e.g. "
        "ZHIHUI_RECORDING__SEGMENT_SECONDS=3600 (repeatable)",
    )
    parser.add_argument(
        "--in-process-relay",
        action="store_true",
        help="zhihui: measure the relay inside `zhihui up` (its CPU shared with the dispatch server) "
        "instead of a `zhihui relay` node of its own (--separate-relay, the default)",
    )
    parser.add_argument(
        "--separate-relay",
        dest="in_process_relay",
        action="store_false",
        help="zhihui: the relay as a node of its own, `zhihui relay`, beside `zhihui up` (the default)",
    )
    parser.add_argument("--keep", action="store_true", help="keep each configuration's folder")
    args = parser.parse_args()
    configs = args.configs or parse_configs(QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS)
    if args.duration is None:
        args.duration = 8.0 if args.quick else 30.0
    if not args.clip.exists():
        parser.error(f"no clip at {args.clip}")
    failures = 0
    for mode, n in configs:
        try:
            line = asyncio.run(run_config(mode, n, args))
        except Exception as exc:
            failures += 1
            line = {
                "bench": "relay_load",
                "config": {"mode": mode, "publishers": n, "viewers_per_publisher": args.viewers},
                "error": f"{type(exc).__name__}: {exc}",
            }
        print(json.dumps(line), flush=True)
    sys.exit(1 if failures == len(configs) else 0)


if __name__ == "__main__":
    main()
