"""What the benchmarks read of this machine: process CPU and memory from ``/proc``, how busy the
machine is, which code ran, and py-spy profiles summed up. Shared by ``relay_load.py``,
``dispatch_load.py`` and ``recording.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "code_tree",
    "cpu_seconds",
    "machine_times",
    "memory_mb",
    "python_speed_ms",
    "summarize_profile",
    "wait_for_quiet",
]

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """user + sys CPU seconds of a process (all its threads)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (all its threads)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def memory_mb(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return {"rss": round(values.get("VmRSS", 0), 1), "peak": round(values.get("VmHWM", 0), 1)}


def machine_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


def python_speed_ms(repeat: int = 5) -> float:
    """CPU milliseconds this machine takes for a fixed piece of pure Python (a million loop steps
    with an addition), best of ``repeat``. The machine here is a virtual one whose speed drifts over
    a day by more than any change under test (the same commit measured 1.1 and 1.9 CPU-s per
    publisher-minute hours apart): benchmark lines carry this so that figures from different runs
    can be put side by side, and changes are compared within one run."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        total = 0
        for step in range(1_000_000):
            total += step
        best = min(best, time.process_time() - start)
    return round(best * 1000, 1)


def wait_for_quiet(
    limit_pct: float, max_wait: float, samples: int = 3, log: Callable[[str], None] = _stderr
) -> float:
    """Wait (up to ``max_wait`` s) until the machine stays under ``limit_pct`` busy for ``samples``
    2-s samples in a row; return the last sample."""
    deadline = time.monotonic() + max_wait
    quiet = 0
    while True:
        busy0, total0 = machine_times()
        time.sleep(2)
        busy1, total1 = machine_times()
        busy = 100 * (busy1 - busy0) / max(1, total1 - total0)
        quiet = quiet + 1 if busy < limit_pct else 0
        if quiet >= samples or time.monotonic() > deadline:
            return busy
        if not quiet:
            log(f"the machine is {busy:.0f}% busy with other work: waiting")


def code_tree(*folders: str, root: Path = ROOT) -> dict[str, Any]:
    """Which code ran: the commit of the checkout at ``root``, and whether ``folders`` had
    uncommitted changes."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    dirty = git("status", "--porcelain", "--", *folders)
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_changes": bool(dirty)}


def summarize_profile(path: Path, top: int = 20) -> dict[str, Any]:
    """Self and inclusive sample shares from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].split("/")[-1] + ")"
            for f in stack.split(";")
            if f
        ]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count

    def share(count: int) -> float:
        return round(100 * count / total, 1) if total else 0.0

    return {
        "samples": total,
        "self_pct": [[name, share(c)] for name, c in own.most_common(top)],
        "inclusive_pct": [[name, share(c)] for name, c in inclusive.most_common(top * 2)],
    }
