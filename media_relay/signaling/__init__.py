"""Signaling: WHIP (RFC 9725) to publish and WHEP to watch, over HTTP."""
