"""Peer connections made the relay's way: ICE servers and host addresses from settings."""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from media_relay import aiortc_compat
from zhihui.settings import RelaySettings

__all__ = ["answer", "new_peer_connection"]


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
    aiortc_compat.restrict_host_addresses(pc, settings.ice_host_addresses)
    await pc.setLocalDescription(await pc.createAnswer())
    local: RTCSessionDescription = pc.localDescription
    return local.sdp
