"""A WHIP client (RFC 9725) on aiortc: publish tracks to the relay, end the session with DELETE."""

from __future__ import annotations

import httpx
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media_relay import aiortc_compat

__all__ = ["WhipError", "WhipPublisher"]


class WhipError(RuntimeError):
    """The relay refused the offer; the message is the relay's own."""


def _detail(response: httpx.Response) -> str:
    """The server's own message from an error response."""
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return response.text


class WhipPublisher:
    def __init__(
        self,
        whip_url: str,
        grant: str,
        *,
        host_addresses: list[str] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.whip_url = whip_url
        self._grant = grant
        self._host_addresses = host_addresses or []
        self._http = http or httpx.AsyncClient(timeout=15)
        self._owns_http = http is None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.session_url: str | None = None

    async def start(self, *tracks: MediaStreamTrack | None) -> None:
        for track in tracks:
            if track is not None:
                self.pc.addTransceiver(track, direction="sendonly")
        aiortc_compat.restrict_host_addresses(self.pc, self._host_addresses)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        response = await self._http.post(
            self.whip_url,
            content=self.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {self._grant}"},
        )
        if response.status_code != 201:
            raise WhipError(f"relay answered {response.status_code}: {_detail(response)}")
        self.session_url = str(httpx.URL(self.whip_url).join(response.headers["location"]))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))

    async def stop(self) -> None:
        if self.session_url is not None:
            try:
                await self._http.delete(self.session_url, headers={"Authorization": f"Bearer {self._grant}"})
            except httpx.HTTPError:
                pass
            self.session_url = None
        await self.pc.close()
        if self._owns_http:
            await self._http.aclose()
