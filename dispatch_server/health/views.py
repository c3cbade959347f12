"""Whether this server can serve, for whatever watches it: a load balancer in front of several
(R18), a supervisor restarting it, a script waiting for it to come up.

Public, like the grant key: it names no person and no stream. It answers 200 while the database
answers (every request needs it: SQL is the record, DESIGN.md 4), 503 with the reason when it
does not. Redis unreachable is ``degraded``, still 200: pushes arrive late, nothing is lost,
since every client reads SQL again (realtime/bus.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import text

from dispatch_server.auth.deps import Ctx
from dispatch_server.errors import Unavailable

__all__ = ["DATABASE_TIMEOUT_SECONDS", "HealthOut", "router"]

router = APIRouter(prefix="/api", tags=["health"])
logger = logging.getLogger(__name__)

DATABASE_TIMEOUT_SECONDS = 3.0
"""A database slower than this to answer ``SELECT 1`` counts as not answering."""


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="ok; or degraded: the bus to the other processes (Redis) does not answer, so "
        "their pushes come late (nothing is lost: clients read the database again)."
    )
    database: str = Field(description="The database's dialect: sqlite or postgresql.")
    bus: str = Field(description="in-process, or redis when several processes share the work.")
    bus_reachable: bool


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Whether this server can serve: 200 while its database answers, 503 when it does not",
    responses={503: {"description": "The database does not answer; the reason is in detail."}},
)
async def health(context: Ctx) -> HealthOut:
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
            async with context.db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as error:  # whatever the driver raises: a refused, dropped or slow connection
        reason = "it did not answer in time" if isinstance(error, TimeoutError) else type(error).__name__
        logger.warning("health check: the database does not answer: %r", error)  # the whole error, here only
        raise Unavailable(f"the database does not answer ({reason})") from error
    reachable = await context.bus.reachable()
    return HealthOut(
        status="ok" if reachable else "degraded",
        database=context.db.dialect,
        bus=context.bus.kind,
        bus_reachable=reachable,
    )
