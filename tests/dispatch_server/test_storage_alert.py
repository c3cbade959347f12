"""R2: the command room is told before the recordings disk is full (and again while it stays
so); a recording write that fails is an alert too, not a log line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import websockets

from media_relay.recording.storage import StorageLevel, StorageWatch, storage_level
from tests.media_relay.recordings import run_python
from tests.support import login, running_zhihui


def test_levels() -> None:
    assert storage_level(10 * 2**30, 5 * 2**30) is StorageLevel.OK
    assert storage_level(4 * 2**30, 5 * 2**30) is StorageLevel.LOW


def test_a_low_disk_is_reported_on_change_and_again_until_fixed(tmp_path: Path) -> None:
    reports: list[StorageLevel] = []
    watch = StorageWatch(
        tmp_path, min_free_bytes=2**62, on_change=lambda level, *_: reports.append(level), repeat_every=0
    )
    assert watch.check() is StorageLevel.LOW
    watch.check()
    assert reports == [StorageLevel.LOW, StorageLevel.LOW]
    calm = StorageWatch(tmp_path, min_free_bytes=0, on_change=lambda level, *_: reports.append(level))
    calm.check()
    calm.check()
    assert reports[2:] == [StorageLevel.OK]


def test_the_command_room_hears_of_a_nearly_full_disk(workdir: Path) -> None:
    with running_zhihui(workdir, "--demo", ZHIHUI_RECORDING__MIN_FREE_GIB="1000000") as zhihui:
        token = login(zhihui.base_url, "commander", zhihui.credentials["commander"])["access_token"]

        async def first_alert() -> dict[str, object]:
            url = zhihui.base_url.replace("http", "ws") + "/ws"
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"type": "auth", "token": token, "last_event_id": 0}))
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] == "alert":
                        return message  # type: ignore[no-any-return]

        message = asyncio.run(asyncio.wait_for(first_alert(), 15))
        alert: dict[str, object] = message["alert"]  # type: ignore[assignment]
        assert alert["kind"] == "storage" and alert["level"] == "warning" and alert["resolved_at"] is None
        assert "free space now" in str(alert["message"]) and message["event_id"]
        # An alert row (R8): the command room lists it with the others.
        listed = httpx.get(
            f"{zhihui.base_url}/api/alerts",
            params={"kind": "storage"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert [a["id"] for a in listed["items"]] == [alert["id"]]


WRITE_UNTIL_FULL = """
import resource, signal, sys
from pathlib import Path
from media_relay.forwarding.frames import MediaKind
from media_relay.recording.recorder import StreamRecorder
from tests.media_relay.recordings import vp8_frames

# A disk that fills up: files may not grow past 60 kB (the kernel answers EFBIG, as for ENOSPC).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
errors = []
recorder = StreamRecorder(
    root=Path(sys.argv[1]), stream_id="s1", tracks={MediaKind.VIDEO: "vp8"}, segment_seconds=600,
    on_write_error=errors.append,
)
for frame in vp8_frames(60):
    recorder.write(frame)
recorder.close()
print("errors:", len(errors), errors[0] if errors else "")
"""


def test_a_failing_write_is_reported_not_just_logged(tmp_path: Path) -> None:
    out = run_python(WRITE_UNTIL_FULL, str(tmp_path))
    assert out.startswith("errors: 1 "), out  # reported once, not once a frame
    assert "Errno" in out or "rror" in out
