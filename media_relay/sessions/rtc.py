"""Peer connections made the relay's way: ICE servers and host addresses from settings."""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from media_relay import aiortc_compat
from zhihui.settings import RelaySettings

__all__ = ["IceRestartUnsupported", "answer", "apply_trickle", "new_peer_connection"]


class IceRestartUnsupported(Exception):
    """aiortc cannot restart ICE on a live connection; the client should open a new session."""


def new_peer_connection(settings: RelaySettings) -> RTCPeerConnection:
    servers = [
        RTCIceServer(
            urls=server.urls,
            username=server.username,
            credential=server.credential.get_secret_value() if server.credential else None,
        )
        for server in settings.ice_servers
    ]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


async def answer(pc: RTCPeerConnection, settings: RelaySettings) -> str:
    """Create, apply and return the local answer, with every candidate gathered in it."""
    aiortc_compat.restrict_host_addresses(pc, settings.ice_host_addresses, settings.udp_port_range)
    await pc.setLocalDescription(await pc.createAnswer())
    local: RTCSessionDescription = pc.localDescription
    return local.sdp


def _remote_ufrag(pc: RTCPeerConnection) -> str | None:
    description = pc.remoteDescription
    if description is None:
        return None
    for line in description.sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line.split(":", 1)[1].strip()
    return None


async def apply_trickle(pc: RTCPeerConnection, fragment: str) -> int:
    """Add the remote candidates of a trickle-ice-sdpfrag (RFC 8840) body; return how many.

    Raises :class:`IceRestartUnsupported` when the fragment carries new ICE credentials, and
    ValueError when a candidate line cannot be read.
    """
    mid: str | None = None
    added = 0
    current = _remote_ufrag(pc)
    for raw in fragment.splitlines():
        line = raw.strip()
        if line.startswith("a=ice-ufrag:") and current is not None and line.split(":", 1)[1] != current:
            raise IceRestartUnsupported
        if line.startswith("a=mid:"):
            mid = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            try:
                candidate = candidate_from_sdp(line[len("a=") :].split(":", 1)[1])
            except (ValueError, IndexError):
                raise ValueError(f"cannot read the candidate {line[:80]!r}") from None
            candidate.sdpMid = mid
            candidate.sdpMLineIndex = None if mid is not None else 0
            await pc.addIceCandidate(candidate)
            added += 1
    return added
