"""A WHIP client (RFC 9725) on aiortc: publish tracks to the relay, end the session with DELETE."""

from __future__ import annotations

import contextlib
import time

import httpx
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media_relay import aiortc_compat

__all__ = ["SignaledPeer", "WhipError", "WhipPublisher"]


class WhipError(RuntimeError):
    """The relay refused the offer; the message is the relay's own."""


def _detail(response: httpx.Response) -> str:
    """The server's own message from an error response."""
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return response.text


class SignaledPeer:
    """A peer connection negotiated over HTTP the WHIP/WHEP way: POST the offer (with every
    candidate), take the answer from the 201, DELETE the ``Location`` to end."""

    def __init__(
        self,
        url: str,
        grant: str,
        *,
        host_addresses: list[str] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self._grant = grant
        self._host_addresses = host_addresses or []
        self._http = http or httpx.AsyncClient(timeout=15)
        self._owns_http = http is None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.session_url: str | None = None
        self.posted_at: float | None = None
        """``time.monotonic()`` when the offer was sent, and when the answer came back."""
        self.answered_at: float | None = None

    async def _negotiate(self) -> None:
        aiortc_compat.restrict_host_addresses(self.pc, self._host_addresses)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.posted_at = time.monotonic()
        response = await self._http.post(
            self.url,
            content=self.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {self._grant}"},
        )
        if response.status_code != 201:
            raise WhipError(f"relay answered {response.status_code}: {_detail(response)}")
        self.answered_at = time.monotonic()
        self.session_url = str(httpx.URL(self.url).join(response.headers["location"]))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))

    async def stop(self) -> None:
        if self.session_url is not None:
            with contextlib.suppress(httpx.HTTPError):
                await self._http.delete(self.session_url, headers={"Authorization": f"Bearer {self._grant}"})
            self.session_url = None
        await self.pc.close()
        if self._owns_http:
            await self._http.aclose()


class WhipPublisher(SignaledPeer):
    """Publishes tracks to the relay (RFC 9725)."""

    @property
    def whip_url(self) -> str:
        return self.url

    async def start(self, *tracks: MediaStreamTrack | None) -> None:
        for track in tracks:
            if track is not None:
                self.pc.addTransceiver(track, direction="sendonly")
        await self._negotiate()
