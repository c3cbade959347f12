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
