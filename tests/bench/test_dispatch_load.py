"""The dispatch benchmark still runs (issue 5): ``bench/dispatch_load.py --quick`` against a real
``zhihui up`` prints one configuration's figures, and they add up. It asserts consistency, not
speed: benchmarks report figures, tests check behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_run_delivers_every_directive_and_stores_every_position(tmp_path: Path) -> None:
    run = subprocess.run(
        # The template of people is kept in var/bench/dispatch/ (keyed by the schema) as a user's
        # runs keep it: made once, it saves each run a server start and the argon2 hashes.
        [sys.executable, str(ROOT / "bench" / "dispatch_load.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = [json.loads(text) for text in run.stdout.splitlines() if text.startswith("{")]
    assert line["config"]["name"] == "sqlite" and line["config"]["officers"] == 5

    directives = line["directives"]
    assert directives["issued"] == 10 and directives["post_status"] == {"201": 10}
    assert directives["delivered"] == 10 and directives["missing"] == 0
    assert 0 < directives["latency_ms"]["p50"] <= directives["latency_ms"]["max"]

    positions = line["positions"]  # 5 officers offer 100 a second: the server keeps up
    assert positions["sent"] > 0 and positions["refused"] == {}
    assert positions["stored_in_window"] + positions["accepted_after_window"] == positions["sent"]
    assert positions["wall_pushes"]["max_per_officer_per_s"] <= 1.0
    assert line["server_rss_mb"]["after"][0]["rss"] > 0
