"""WHIP and WHEP endpoints. They translate HTTP to registry calls and errors to status codes."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from media_relay.sessions.registry import SessionNotFound, StreamNotLive, StreamRegistry
from media_relay.signaling.sdp import OfferRejected, check_offer
from zhihui.grants import GrantError, GrantVerifier

__all__ = ["build_router"]

logger = logging.getLogger(__name__)

SDP = "application/sdp"


class _HttpError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def _error(exc: _HttpError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _grant_error(exc: GrantError) -> _HttpError:
    if exc.forbidden:
        return _HttpError(403, exc.message)
    return _HttpError(401, exc.message, {"WWW-Authenticate": 'Bearer realm="zhihui-relay"'})


async def _read_offer(request: Request, max_bytes: int) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != SDP:
        raise _HttpError(415, f"the offer must be sent as {SDP}, not {content_type or 'nothing'}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _HttpError(413, f"the SDP offer is larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _HttpError(413, f"the SDP offer is larger than {max_bytes} bytes")
    try:
        return check_offer(bytes(body))
    except OfferRejected as exc:
        raise _HttpError(400, str(exc)) from None


def _created(answer: str, location: str) -> Response:
    return Response(
        content=answer,
        status_code=201,
        media_type=SDP,
        headers={"Location": location, "Access-Control-Expose-Headers": "Location"},
    )


def build_router(registry: StreamRegistry, verifier: GrantVerifier, max_sdp_bytes: int) -> APIRouter:
    router = APIRouter()

    @router.post("/whip", status_code=201, summary="Publish a stream (WHIP, RFC 9725)")
    async def whip(request: Request) -> Response:
        try:
            grant = verifier.publish(_bearer(request))
            offer = await _read_offer(request, max_sdp_bytes)
            try:
                session, answer = await registry.publish(grant, offer)
            except ValueError as exc:
                raise _HttpError(400, f"the offer cannot be negotiated: {exc}") from None
        except GrantError as exc:
            return _error(_grant_error(exc))
        except _HttpError as exc:
            return _error(exc)
        return _created(answer, f"{request.url.path.rstrip('/')}/{session.id}")

    @router.post("/whep/{stream_id}", status_code=201, summary="Watch a stream (WHEP)")
    async def whep(stream_id: str, request: Request) -> Response:
        try:
            grant = verifier.view(_bearer(request), stream_id)
            offer = await _read_offer(request, max_sdp_bytes)
            try:
                session, answer = await registry.view(grant, stream_id, offer)
            except StreamNotLive as exc:
                raise _HttpError(404, str(exc)) from None
            except ValueError as exc:
                raise _HttpError(400, f"the offer cannot be negotiated: {exc}") from None
        except GrantError as exc:
            return _error(_grant_error(exc))
        except _HttpError as exc:
            return _error(exc)
        base = request.url.path.rsplit("/", 2)[0]
        return _created(answer, f"{base}/whep/session/{session.id}")

    @router.delete("/whip/{session_id}", status_code=200, summary="End a publish session")
    async def end_publish(session_id: str, request: Request) -> Response:
        return await _end(session_id, request, publish=True)

    @router.delete("/whep/session/{session_id}", status_code=200, summary="End a viewer session")
    async def end_view(session_id: str, request: Request) -> Response:
        return await _end(session_id, request, publish=False)

    async def _end(session_id: str, request: Request, *, publish: bool) -> Response:
        token = _bearer(request)
        try:
            if publish:
                session = registry.publishers.get(session_id)
                grant_sub = verifier.publish(token).sub if session else None
            else:
                viewer = registry.viewers.get(session_id)
                grant_sub = verifier.view(token, viewer.stream.stream_id).sub if viewer else None
                session = viewer  # type: ignore[assignment]
            if session is None:
                raise _HttpError(404, f"no session {session_id!r}")
            if grant_sub != session.grant.sub:
                raise _HttpError(403, "this grant did not open that session")
            await registry.close_session(session_id)
        except GrantError as exc:
            return _error(_grant_error(exc))
        except SessionNotFound as exc:
            return _error(_HttpError(404, str(exc)))
        except _HttpError as exc:
            return _error(exc)
        return Response(status_code=200)

    @router.get("/streams", summary="Live streams on this relay")
    async def streams() -> list[dict[str, object]]:
        return [stream.describe() for stream in registry.streams.values()]

    return router
