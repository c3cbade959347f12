"""WHIP and WHEP endpoints. They translate HTTP to registry calls and errors to status codes."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from media_relay.aiortc_compat import NoFreePort
from media_relay.sessions.publisher import PublisherSession
from media_relay.sessions.registry import SessionNotFound, StreamNotLive, StreamRegistry
from media_relay.sessions.rtc import IceRestartUnsupported
from media_relay.sessions.stats import RelayStats, collect, prometheus_text
from media_relay.sessions.viewer import ViewerSession
from media_relay.signaling.sdp import OfferRejected, check_offer
from zhihui.grants import GrantError, GrantVerifier
from zhihui.settings import IceServer, RelaySettings

__all__ = ["build_router"]

logger = logging.getLogger(__name__)

SDP = "application/sdp"
TRICKLE = "application/trickle-ice-sdpfrag"


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


def ice_server_links(servers: list[IceServer]) -> list[str]:
    """RFC 9725 4.6: the ICE servers a client should use, as ``Link`` header values."""
    links = []
    for server in servers:
        for url in server.urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username is not None and server.credential is not None:
                username = server.username.replace('"', "")
                credential = server.credential.get_secret_value().replace('"', "")
                link += f'; username="{username}"; credential="{credential}"; credential-type="password"'
            links.append(link)
    return links


def build_router(registry: StreamRegistry, verifier: GrantVerifier, settings: RelaySettings) -> APIRouter:
    router = APIRouter()
    max_sdp_bytes = settings.max_sdp_bytes
    links = ice_server_links(settings.ice_servers)

    def _created(answer: str, location: str) -> Response:
        response = Response(
            content=answer,
            status_code=201,
            media_type=SDP,
            headers={"Location": location, "Access-Control-Expose-Headers": "Location, Link"},
        )
        for link in links:
            response.headers.append("Link", link)
        return response

    def _options() -> Response:
        response = Response(status_code=204, headers={"Accept-Post": SDP, "Allow": "OPTIONS, POST"})
        for link in links:
            response.headers.append("Link", link)
        return response

    @router.options("/whip", summary="What the WHIP endpoint accepts, and its ICE servers")
    async def whip_options() -> Response:
        return _options()

    @router.options("/whep/{stream_id}", summary="What the WHEP endpoint accepts, and its ICE servers")
    async def whep_options(stream_id: str) -> Response:
        return _options()

    @router.post("/whip", status_code=201, summary="Publish a stream (WHIP, RFC 9725)")
    async def whip(request: Request) -> Response:
        try:
            grant = verifier.publish(_bearer(request))
            offer = await _read_offer(request, max_sdp_bytes)
            try:
                session, answer = await registry.publish(grant, offer)
            except ValueError as exc:
                raise _HttpError(400, f"the offer cannot be negotiated: {exc}") from None
            except NoFreePort as exc:
                raise _HttpError(503, f"{exc}: the relay is full", {"Retry-After": "5"}) from None
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
            except NoFreePort as exc:
                raise _HttpError(503, f"{exc}: the relay is full", {"Retry-After": "5"}) from None
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
        try:
            _owned_session(session_id, _bearer(request), publish=publish)
            await registry.close_session(session_id)
        except GrantError as exc:
            return _error(_grant_error(exc))
        except SessionNotFound as exc:
            return _error(_HttpError(404, str(exc)))
        except _HttpError as exc:
            return _error(exc)
        return Response(status_code=200)

    @router.patch("/whip/{session_id}", summary="Trickle ICE candidates to a publish session")
    async def patch_publish(session_id: str, request: Request) -> Response:
        return await _patch(session_id, request, publish=True)

    @router.patch("/whep/session/{session_id}", summary="Trickle ICE candidates to a viewer session")
    async def patch_view(session_id: str, request: Request) -> Response:
        return await _patch(session_id, request, publish=False)

    async def _patch(session_id: str, request: Request, *, publish: bool) -> Response:
        try:
            session = _owned_session(session_id, _bearer(request), publish=publish)
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != TRICKLE:
                raise _HttpError(415, f"PATCH takes {TRICKLE}, not {content_type or 'nothing'}")
            body = await request.body()
            if len(body) > max_sdp_bytes:
                raise _HttpError(413, f"the fragment is larger than {max_sdp_bytes} bytes")
            try:
                await session.trickle(body.decode("utf-8", errors="replace"))
            except IceRestartUnsupported:
                raise _HttpError(
                    501,
                    "ICE restart is not supported: open a new session with the same grant, "
                    "and the stream continues",
                ) from None
            except ValueError as exc:
                raise _HttpError(400, str(exc)) from None
        except GrantError as exc:
            return _error(_grant_error(exc))
        except _HttpError as exc:
            return _error(exc)
        return Response(status_code=204)

    def _owned_session(
        session_id: str, token: str | None, *, publish: bool
    ) -> PublisherSession | ViewerSession:
        """The session, if this grant opened it; else the right HTTP error."""
        session: PublisherSession | ViewerSession | None
        if publish:
            session = registry.publishers.get(session_id) or registry.dropped.get(session_id)
            # The grant for this very stream: another stream's grant, even the same officer's, is not.
            owner = session is not None and verifier.publish(token).stream == session.grant.stream
        else:
            session = registry.viewers.get(session_id)
            watched = session.stream.stream_id if session is not None else ""
            owner = session is not None and verifier.view(token, watched).sub == session.grant.sub
        if session is None:
            raise _HttpError(404, f"no session {session_id!r}")
        if not owner:
            raise _HttpError(403, "this grant did not open that session")
        return session

    @router.get("/stats", response_model=RelayStats, summary="Per stream and per viewer statistics")
    async def stats() -> RelayStats:
        return await collect(list(registry.streams.values()), registry.loop_lag.snapshot())

    @router.get("/metrics", summary="The same statistics for Prometheus")
    async def metrics() -> Response:
        body = prometheus_text(await collect(list(registry.streams.values()), registry.loop_lag.snapshot()))
        return Response(body, media_type="text/plain; version=0.0.4")

    @router.get("/streams", summary="Live streams on this relay")
    async def streams() -> list[dict[str, object]]:
        return [stream.describe() for stream in registry.streams.values()]

    return router
