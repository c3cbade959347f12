"""Officers for ``bench/dispatch_load.py``: one worker process holds many officers' websockets.

Each officer connects to ``/ws`` with its token and waits for ``ready``. From then on every
``directive`` that arrives is noted with its receive time (``time.time()``, the machine's clock,
which the driver also uses to stamp each issuing POST) and acknowledged, as the field client
does. On command, every officer of the worker sends positions at a given rate (the offered load) until
an agreed wall-clock time; a send waits when the socket's buffers are full, so an officer whose
server reads more slowly falls behind instead of piling up.

The driver talks to a worker over a ``multiprocessing`` pipe: the worker answers ``("ready",
...)`` once connected, then obeys ``("positions", start, end)``, ``("receipts",)`` and
``("stop",)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import websockets


@dataclass
class WorkerSpec:
    index: int
    officers: list[tuple[int, str, str]]
    """(person id, access token, ws URL) of each officer this worker holds."""
    acknowledge: bool = True


@dataclass
class Officer:
    person_id: int
    ws: Any
    received: list[tuple[int, float]] = field(default_factory=list)
    """(directive id, receive time) of every directive that arrived."""
    errors: list[str] = field(default_factory=list)
    positions_sent: int = 0


class LoopLag:
    """How late this process's event loop wakes (a sign that the load side is the bottleneck)."""

    def __init__(self, every: float = 0.05) -> None:
        self.every = every
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.every)
            self.samples.append((time.perf_counter() - before - self.every) * 1000)

    def take(self) -> list[float]:
        samples, self.samples = self.samples, []
        return samples


async def _connect(person_id: int, token: str, url: str) -> Officer:
    ws = await websockets.connect(url, max_size=2**20, open_timeout=60, ping_interval=None, write_limit=16384)
    # A small send buffer: an officer sending faster than the server reads is held back soon,
    # instead of filling megabytes of socket buffer (and this worker's CPU) first.
    ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    ready = json.loads(await asyncio.wait_for(ws.recv(), 60))
    if ready.get("type") != "ready":
        raise RuntimeError(f"officer {person_id}: {ready}")
    return Officer(person_id=person_id, ws=ws)


async def _read(officer: Officer, acknowledge: bool) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for raw in officer.ws:
            at = time.time()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "directive":
                directive_id = message["directive"]["id"]
                officer.received.append((directive_id, at))
                if acknowledge:
                    await officer.ws.send(json.dumps({"type": "ack", "directive_id": directive_id}))
            elif kind == "error":
                officer.errors.append(str(message.get("message")))


def _position(person_id: int, n: int) -> str:
    """A fix on a small walk around the Bund, stamped now (preformatted: the client is not the
    thing measured)."""
    at = datetime.now(UTC).isoformat()
    latitude = 31.2304 + (person_id % 100) * 0.0001 + (n % 1000) * 0.000001
    return (
        f'{{"type":"position","latitude":{latitude:.6f},"longitude":121.4737,'
        f'"accuracy_m":8.0,"heading_deg":90.0,"speed_mps":1.4,"at":"{at}"}}'
    )


TICK = 0.1
"""Officers send their positions in small bursts this often."""


async def _send_positions(officer: Officer, start: float, end: float, rate: float) -> None:
    """``rate`` positions a second from ``start`` to ``end``: the offered load. A send waits when
    the socket's buffers are full, so an officer the server reads more slowly than ``rate``
    falls behind (what it could not send is not counted as sent)."""
    began = start + random.uniform(0, TICK)  # the officers' bursts spread over the tick
    await asyncio.sleep(max(0.0, began - time.time()))
    n = 0
    with contextlib.suppress(websockets.ConnectionClosed):
        while (now := time.time()) < end:
            due = int((now - began) * rate) + 1
            while n < due:
                await officer.ws.send(_position(officer.person_id, n))
                n += 1
            await asyncio.sleep(max(began + n / rate - time.time(), TICK / 2))
    officer.positions_sent += n


async def _main(spec: WorkerSpec, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    lag = LoopLag()
    lag.start()
    began = time.monotonic()
    officers: list[Officer] = []
    for start in range(0, len(spec.officers), 25):  # 25 at a time: a burst of 500 handshakes is not the test
        chunk = spec.officers[start : start + 25]
        officers.extend(await asyncio.gather(*(_connect(*officer) for officer in chunk)))
    readers = [asyncio.create_task(_read(officer, spec.acknowledge)) for officer in officers]
    pipe.send(("ready", {"officers": len(officers), "connect_s": round(time.monotonic() - began, 2)}))
    cpu_before = time.process_time()
    lag.take()
    try:
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command[0] == "positions":
                _, start, end, rate = command
                cpu_before, lag_before = time.process_time(), lag.take()
                del lag_before
                for officer in officers:
                    officer.positions_sent = 0
                await asyncio.gather(*(_send_positions(officer, start, end, rate) for officer in officers))
                pipe.send(
                    (
                        "positions",
                        {
                            "sent": sum(o.positions_sent for o in officers),
                            "cpu_s": time.process_time() - cpu_before,
                            "loop_lag_ms": lag.take(),
                        },
                    )
                )
            elif command[0] == "receipts":
                pipe.send(
                    (
                        "receipts",
                        {
                            "received": [r for o in officers for r in o.received],
                            "errors": [e for o in officers for e in o.errors],
                            "cpu_s": time.process_time() - cpu_before,
                            "loop_lag_ms": lag.take(),
                        },
                    )
                )
                cpu_before = time.process_time()
                for officer in officers:
                    officer.received.clear()
                    officer.errors.clear()
            elif command[0] == "stop":
                break
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*(officer.ws.close() for officer in officers), return_exceptions=True)
    pipe.send(("stopped", {}))


def worker_main(spec: WorkerSpec, pipe: Connection) -> None:
    try:
        asyncio.run(_main(spec, pipe))
    except Exception as exc:  # the driver reports it
        with contextlib.suppress(Exception):
            pipe.send(("failed", repr(exc)))
        raise
