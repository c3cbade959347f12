"""R18: a relay run apart reports its events to the dispatch server in order, waits out an outage
without losing or reordering them, drops only past its bound (counted, and never the report that
ends a crashed run's streams), and remembers its live streams across a crash.

The dispatch server here is an httpx transport that the test makes unreachable at will: the network
failing is the point, not the server.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from media_relay.events import StreamDown, StreamHealth, StreamUp
from media_relay.reporter import SECRET_HEADER, HttpReporter, LiveStreamsFile

SECRET = "a-secret-of-24-characters"


class Dispatch:
    """What the dispatch server took, and whether it answers."""

    def __init__(self) -> None:
        self.reachable = False
        self.status = 204
        self.taken: list[dict[str, Any]] = []
        self.attempts = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if not self.reachable:
            raise httpx.ConnectError("connection refused", request=request)
        assert request.url.path == "/api/relay/events"
        if request.headers.get(SECRET_HEADER) != SECRET:
            return httpx.Response(401, json={"detail": "wrong secret"})
        if self.status != 204:
            return httpx.Response(self.status, json={"detail": "refused"})
        self.taken.append(json.loads(request.content))
        return httpx.Response(204)

    def events(self) -> list[dict[str, Any]]:
        return [report["event"] for report in self.taken]


def _reporter(
    dispatch: Dispatch, *, live_file: LiveStreamsFile | None = None, **options: Any
) -> HttpReporter:
    return HttpReporter(
        dispatch_url="http://dispatch.test",
        secret=SECRET,
        node="relay-a",
        live_file=live_file,
        retry_max_seconds=0.05,
        transport=httpx.MockTransport(dispatch.handle),
        **options,
    )


def _health(n: int) -> StreamHealth:
    return StreamHealth(stream_id="s1", officer_id="7", at=datetime.now(UTC), flags=[f"flag{n}"])


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_events_wait_out_an_outage_and_arrive_in_order() -> None:
    dispatch = Dispatch()
    reporter = _reporter(dispatch)
    reporter.start()
    for n in range(20):
        await reporter(_health(n))  # returns at once: the relay never waits for the dispatch server
    await _until(lambda: dispatch.attempts >= 3)
    assert reporter.pending == 21 and dispatch.taken == []
    dispatch.reachable = True
    await _until(lambda: reporter.pending == 0)
    await reporter.stop()
    events = dispatch.events()
    assert events[0]["type"] == "relay_started" and events[0]["left_live"] == []
    assert [e["flags"] for e in events[1:]] == [[f"flag{n}"] for n in range(20)]
    assert {report["node"] for report in dispatch.taken} == {"relay-a"}
    assert reporter.delivered == 21 and reporter.dropped == 0


async def test_past_its_bound_the_oldest_are_dropped_and_counted_but_never_relay_started() -> None:
    dispatch = Dispatch()
    reporter = _reporter(dispatch, max_pending=10)
    reporter.start()
    for n in range(15):
        await reporter(_health(n))
    assert reporter.pending == 10 and reporter.dropped == 6
    dispatch.reachable = True
    await _until(lambda: reporter.pending == 0)
    await reporter.stop()
    events = dispatch.events()
    assert events[0]["type"] == "relay_started"
    assert [e["flags"] for e in events[1:]] == [[f"flag{n}"] for n in range(6, 15)]


async def test_a_refused_secret_is_retried_and_a_malformed_event_is_dropped_and_counted() -> None:
    dispatch = Dispatch()
    dispatch.reachable = True
    reporter = HttpReporter(
        dispatch_url="http://dispatch.test",
        secret="not-the-right-secret-at-all",
        node="relay-a",
        retry_max_seconds=0.05,
        transport=httpx.MockTransport(dispatch.handle),
    )
    reporter.start()
    await _until(lambda: dispatch.attempts >= 3)
    assert reporter.pending == 1 and reporter.dropped == 0  # kept: the settings may be put right
    await reporter.stop(timeout=0.1)

    dispatch = Dispatch()
    dispatch.reachable, dispatch.status = True, 422
    reporter = _reporter(dispatch)
    reporter.start()
    await _until(lambda: reporter.pending == 0)
    await reporter.stop()
    assert reporter.dropped == 1 and dispatch.attempts == 1


def _up(stream_id: str) -> StreamUp:
    return StreamUp(
        stream_id=stream_id, officer_id="7", started_at=datetime.now(UTC), video_codec="vp8", audio_codec=None
    )


def _down(stream_id: str) -> StreamDown:
    return StreamDown(
        stream_id=stream_id, officer_id="7", ended_at=datetime.now(UTC), reason="publisher left"
    )


def _open(path: Path) -> list[str]:
    return list(json.loads(path.read_text())["live"])


async def test_streams_a_crash_left_open_are_named_by_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "relay-node-relay-a.json"
    dispatch = Dispatch()
    first = _reporter(dispatch, live_file=LiveStreamsFile(path), max_pending=6)
    first.start()
    for stream_id in ("s1", "s2", "s3"):
        await first(_up(stream_id))
    assert _open(path) == ["s1", "s2", "s3"]  # on the disk before the dispatch server can hear of it
    await first(_down("s2"))
    assert _open(path) == ["s1", "s2", "s3"]  # its end is not delivered yet: still open
    dispatch.reachable = True
    await _until(lambda: first.pending == 0)
    assert _open(path) == ["s1", "s3"]

    # The dispatch server is away and the queue overflows: s4's dropped report keeps it open even
    # after its end is delivered, so that the next run reports its manifest again.
    dispatch.reachable = False
    await first(_up("s4"))
    for n in range(6):
        await first(_health(n) if n else _health(n).model_copy(update={"stream_id": "s4"}))
    assert first.dropped == 1
    await first(_down("s4"))
    dispatch.reachable = True
    await _until(lambda: first.pending == 0)
    assert _open(path) == ["s1", "s3", "s4"]

    # A crash: no stop. The next run names what the first left open, reports it again (their
    # manifests, here a stand-in), and keeps it in the file until all that is delivered.
    await first.stop()
    dispatch.reachable, taken_before, attempts_before = False, len(dispatch.taken), dispatch.attempts
    second = _reporter(dispatch, live_file=LiveStreamsFile(path))
    assert second.start(replay=lambda ids: [_health(0).model_copy(update={"stream_id": i}) for i in ids]) == [
        "s1",
        "s3",
        "s4",
    ]
    await _until(lambda: dispatch.attempts > attempts_before)
    assert _open(path) == ["s1", "s3", "s4"]  # not delivered yet
    dispatch.reachable = True
    await _until(lambda: second.pending == 0)
    await second.stop()
    assert _open(path) == []
    started, *replayed = dispatch.events()[taken_before:]
    assert started["type"] == "relay_started" and started["left_live"] == ["s1", "s3", "s4"]
    assert [event["stream_id"] for event in replayed] == ["s1", "s3", "s4"]
