"""The rules for relays run apart: who may report, and what a relay's restart ends."""

from __future__ import annotations

import hmac
from datetime import datetime

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.errors import Unauthorized
from dispatch_server.streams.models import Stream
from media_relay.events import StreamDown

__all__ = ["RESTART_REASON", "check_secret", "orphaned_streams"]

RESTART_REASON = "relay restart"


def check_secret(expected: SecretStr | None, given: str | None) -> None:
    """Raise :class:`Unauthorized` unless ``given`` is the relays' shared secret (constant time)."""
    if expected is None:
        raise Unauthorized("this dispatch server takes no relay reports: relay_node.secret is not set")
    if given is None or not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise Unauthorized("a relay's report needs the relays' shared secret")


async def orphaned_streams(
    *, db_session: AsyncSession, stream_ids: list[str], at: datetime
) -> list[StreamDown]:
    """A relay node started again: a ``stream_down`` for each of the streams its previous run left
    live (as it tells) that this server still holds live."""
    if not stream_ids:
        return []
    query = (
        select(Stream)
        .where(Stream.id.in_(stream_ids), Stream.started_at.is_not(None), Stream.ended_at.is_(None))
        .order_by(Stream.started_at, Stream.id)
    )
    live = (await db_session.scalars(query)).unique().all()
    return [
        StreamDown(stream_id=s.id, officer_id=str(s.officer_id), ended_at=at, reason=RESTART_REASON)
        for s in live
    ]
