from typing import Any

MAX_PACKET: int

def send_frame(
    fd: int,
    family: int,
    address: tuple[Any, ...],
    gso: bool,
    srtp_context: int,
    srtp_protect: int,
    header: bytes,
    payloads: tuple[bytes, ...],
    sequence: int,
    marker: int,
    history: list[bytes | None],
    /,
) -> tuple[int, int, list[bytes], int]: ...

def receive(
    srtp_context: int, srtp_unprotect: int, datagram: bytes, /
) -> bytes | tuple[bytes, int, int, int, int, int, tuple[int, bytes] | None, bytes, int, int] | None: ...

class Track:
    video: bool
    ssrc: int | None
    base_seq: int | None
    max_seq: int | None
    outstanding: int
    head: int
    frames: int
    frames_skipped: int
    holes_skipped: int
    packets_late: int
    packets: int
    lost: int
    recovered: int
    given_up: int
    nacks_sent: int
    retry_interval: float
    cycles: int
    packets_received: int
    jitter_q4: int
    def __init__(
        self,
        video: bool,
        codecs: dict[int, tuple[str, int]],
        *,
        max_wait: float = ...,
        keyframe_after: float = ...,
        capacity: int = ...,
        nack: bool = ...,
        retry_interval: float = ...,
        max_tries: int = ...,
        max_age: float = ...,
    ) -> None: ...
    def receive(
        self, srtp_context: int, srtp_unprotect: int, datagram: bytes, now: float | None = ..., /
    ) -> bytes | tuple[Any, ...] | None: ...
    def add(self, packet: Any, now: float | None = ..., /) -> tuple[Any, ...] | None: ...
    def due(self, now: float | None = ..., /) -> list[int]: ...
    def bind(
        self,
        ssrc: int,
        clock_rate: int,
        base_seq: int,
        max_seq: int,
        cycles: int,
        packets_received: int,
        jitter_q4: int,
        last_arrival: int,
        last_timestamp: int,
        /,
    ) -> None: ...
    def count(self, sequence_number: int, timestamp: int, /) -> None: ...
    def frame_timestamp(self, rtp_timestamp: int, /) -> int | None: ...
    def forget_through(self, sequence_number: int, /) -> None: ...
