"""The relay's per-packet work (issue 3), C against Python, on one core: prints one JSON line.

- **out**: one viewer's video frame (ten RTP packets of 1.2 kB, as the bodycam clip's 720p frames
  come) made, kept for retransmission, SRTP-protected and sent to a loopback socket: through
  ``UdpBatchSender.send_frame`` (``_datapath.send_frame``, C) and through the same steps in Python
  (``rtp_out.packetize``, ``LeanSrtp.protect``, ``UdpBatchSender.send``).
- **in**: one publisher's SRTP datagram unprotected and its header read: ``_datapath.receive``
  against ``LeanSrtp.unprotect`` followed by the Python parsing it replaced.

The same bytes go out either way (tests/media_relay/test_datapath.py). Each figure is CPU time
(``time.process_time``) per frame or per datagram, the best of ``--rounds`` rounds, alternating the
two ways; the kernel's share of a send is in both. The receiving socket is never read, so its
queue fills and the kernel drops what arrives: the sending side's cost is what is measured.

    .venv/bin/python bench/datapath.py                 # 5 rounds of 3000 frames and 30000 datagrams
    .venv/bin/python bench/datapath.py --rounds 9 --frames 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pylibsrtp  # noqa: E402

from bench.machine import python_speed_ms  # noqa: E402
from bench.relay_load import relay_tree  # noqa: E402
from media_relay.aiortc_compat import LeanSrtp  # noqa: E402
from media_relay.forwarding import _datapath  # noqa: E402
from media_relay.forwarding.rtp_out import HISTORY, packetize  # noqa: E402
from media_relay.forwarding.udp_batch import UdpBatchSender  # noqa: E402

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
EXTENSION = b"\xbe\xde\x00\x01\x11v1\x00"  # the mid, as the relay sends it
_HEADER = struct.Struct("!BBHII")


def session(key: bytes, direction: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(policy=pylibsrtp.Policy(key=key, ssrc_type=direction, srtp_profile=PROFILE))


async def out_per_frame(frames: int, rounds: int) -> dict[str, float]:
    """CPU µs per frame sent, each way: the best round."""
    loop = asyncio.get_running_loop()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    key = os.urandom(30)
    srtp = LeanSrtp(session(key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    sender = UdpBatchSender(transport)
    address = sink.getsockname()
    payloads = (*(os.urandom(1180) for _ in range(9)), os.urandom(700))
    history: list[bytes | None] = [None] * HISTORY
    sequence = 0

    def c_way(n: int) -> None:
        nonlocal sequence
        header = _HEADER.pack(0x90, 96, 0, n * 6000, 0x1234ABCD) + EXTENSION
        sequence, _ = sender.send_frame(address, srtp, header, payloads, sequence, 0x80, history)

    def python_way(n: int) -> None:
        nonlocal sequence
        header = _HEADER.pack(0x90, 96, 0, n * 6000, 0x1234ABCD) + EXTENSION
        packets, sequence, _ = packetize(header, payloads, sequence, 0x80, history)
        sender.send([srtp.protect(packet) for packet in packets], address)

    best = {"c": float("inf"), "python": float("inf")}
    try:
        for _ in range(rounds):
            for name, way in (("c", c_way), ("python", python_way)):
                start = time.process_time()
                for n in range(frames):
                    way(n)
                best[name] = min(best[name], (time.process_time() - start) / frames * 1e6)
    finally:
        transport.close()
        sink.close()
    return best


def in_per_datagram(datagrams: int, rounds: int) -> dict[str, float]:
    """CPU µs per datagram unprotected and read, each way: the best round."""
    payload = b"\x90\x80\x05" + os.urandom(1180)
    unprotect_address = LeanSrtp.unprotect_address
    header = struct.Struct("!HII")
    best = {"c": float("inf"), "python": float("inf")}
    for _ in range(rounds):
        for name in ("c", "python"):
            key = os.urandom(30)  # a publisher of its own each time: sequence numbers from 0
            publisher = session(key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
            batch = [
                publisher.protect(
                    _HEADER.pack(0x90, 96 | (0x80 if n % 10 == 9 else 0), n, n // 10 * 6000, 7)
                    + EXTENSION
                    + payload
                )
                for n in range(datagrams)
            ]
            srtp = LeanSrtp(session(key, pylibsrtp.Policy.SSRC_ANY_INBOUND))
            start = time.process_time()
            if name == "c":
                for data in batch:
                    _datapath.receive(srtp.address, unprotect_address, data)
            else:
                for data in batch:
                    plain = srtp.unprotect(data)
                    first = plain[0]
                    header.unpack_from(plain, 2)
                    pos = 12 + 4 * (first & 0x0F)
                    if first & 0x10:
                        pos += 4 + 4 * int.from_bytes(plain[pos + 2 : pos + 4])
                    body = plain[pos:]
                    _ = body[3:]  # the VP8 descriptor skipped
            best[name] = min(best[name], (time.process_time() - start) / datagrams * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description="The relay's per-packet work, C against Python: one JSON line."
    )
    parser.add_argument("--frames", type=int, default=3000, help="frames sent per round and way (3000)")
    parser.add_argument(
        "--datagrams", type=int, default=30000, help="datagrams read per round and way (30000)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best of each way is kept (5)")
    args = parser.parse_args()
    if not 0 < args.datagrams <= 65536 or args.frames < 1 or args.rounds < 1:
        parser.error("--frames and --rounds must be at least 1, --datagrams from 1 to 65536")
    out = asyncio.run(out_per_frame(args.frames, args.rounds))
    received = in_per_datagram(args.datagrams, args.rounds)
    line: dict[str, Any] = {
        "bench": "datapath",
        "out_cpu_us_per_frame": {key: round(value, 2) for key, value in out.items()},
        "in_cpu_us_per_datagram": {key: round(value, 2) for key, value in received.items()},
        "frame": {"packets": 10, "bytes": 9 * 1180 + 700},
        "rounds": args.rounds,
        "machine_python_ms": python_speed_ms(),
        "tree": relay_tree(),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
