"""Relays run apart (``zhihui relay``, R18): the grant key they verify with, and their reports."""

from __future__ import annotations

import logging
from typing import Annotated

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends, Header, Request

from dispatch_server.auth.deps import Ctx, Now
from dispatch_server.errors import Unauthorized
from dispatch_server.relays import service
from dispatch_server.relays.schemas import GrantPublicKeyOut
from media_relay.events import RelayReport, RelayStarted
from media_relay.reporter import SECRET_HEADER
from zhihui.grants import ALGORITHM

router = APIRouter(prefix="/api", tags=["relays"])
logger = logging.getLogger(__name__)


@router.get(
    "/grants/public-key",
    response_model=GrantPublicKeyOut,
    summary="The public key that verifies publish and view grants (for relays run apart)",
)
async def grant_public_key(context: Ctx) -> GrantPublicKeyOut:
    pem = context.grants.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return GrantPublicKeyOut(algorithm=ALGORITHM, public_key_pem=pem.decode())


async def relay_only(
    request: Request,
    context: Ctx,
    secret: Annotated[str | None, Header(alias=SECRET_HEADER, include_in_schema=False)] = None,
) -> None:
    """Only a relay, with the shared secret, may report: no person, of any role."""
    try:
        service.check_secret(context.settings.relay_node.secret, secret)
    except Unauthorized:
        source = request.client.host if request.client else "?"
        logger.warning("relay report refused from %s: %s", source, "wrong secret" if secret else "no secret")
        raise


@router.post(
    "/relay/events",
    status_code=204,
    dependencies=[Depends(relay_only)],
    summary=f"A relay node's event, in order (relays only, with the shared secret in '{SECRET_HEADER}')",
    responses={401: {"description": "Not a relay: the shared secret is missing or wrong"}},
)
async def relay_event(report: RelayReport, request: Request, context: Ctx, now: Now) -> None:
    """The same path as the in-process relay's events; a ``relay_started`` ends the streams the
    node's previous run left live."""
    handle = request.app.state.relay_events
    event = report.event
    if isinstance(event, RelayStarted):
        async with context.db.sessions() as db_session:
            orphans = await service.orphaned_streams(
                db_session=db_session, stream_ids=event.left_live, at=now
            )
        if orphans:
            logger.warning("relay %s restarted: ending %d stream(s) it left live", report.node, len(orphans))
        for down in orphans:
            await handle(down)
        return
    await handle(event)
