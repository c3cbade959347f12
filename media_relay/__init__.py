"""The media relay: WHIP ingest, WHEP viewing, forwarding without transcoding, recording.

Layers, top to bottom (each imports only from below it):
``signaling`` (WHIP/WHEP over HTTP) -> ``sessions`` (publishers, viewers, the stream registry)
-> ``forwarding`` and ``recording`` (encoded frames to viewers and to disk) -> ``aiortc_compat``
(the one module that touches aiortc internals).
"""
