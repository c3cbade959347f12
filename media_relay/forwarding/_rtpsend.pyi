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
