"""First checks on an SDP offer, before any of it reaches aiortc."""

from __future__ import annotations

__all__ = ["OfferRejected", "check_offer"]


class OfferRejected(ValueError):
    """The body is not an SDP offer the relay will negotiate."""


def check_offer(body: bytes) -> str:
    """Return the offer as text, or raise :class:`OfferRejected` saying what is wrong with it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise OfferRejected("the SDP offer is not UTF-8 text") from None
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0] != "v=0":
        raise OfferRejected("the body is not an SDP offer: it must start with 'v=0'")
    media = [line for line in lines if line.startswith("m=")]
    if not any(line.startswith(("m=audio", "m=video")) for line in media):
        raise OfferRejected("the SDP offer has no audio or video section")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise OfferRejected("the SDP offer has no DTLS fingerprint (a=fingerprint)")
    if not any(line.startswith("a=ice-ufrag:") for line in lines):
        raise OfferRejected("the SDP offer has no ICE credentials (a=ice-ufrag)")
    return text if text.endswith("\n") else text + "\r\n"
