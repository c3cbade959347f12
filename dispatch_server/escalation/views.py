from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from dispatch_server.auth.deps import DbSession, require_roles
from dispatch_server.escalation import service
from dispatch_server.escalation.schemas import EscalationOut
from dispatch_server.people.models import WATCH_ROLES, Person

router = APIRouter(prefix="/api/escalations", tags=["escalations"])


@router.get("", response_model=list[EscalationOut], summary="Escalations, newest first, a page at a time")
async def list_escalations(
    db_session: DbSession,
    _user: Annotated[Person, Depends(require_roles(*WATCH_ROLES))],
    incident_id: int | None = None,
    directive_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[EscalationOut]:
    rows = await service.list_escalations(
        db_session=db_session, incident_id=incident_id, directive_id=directive_id, limit=limit, offset=offset
    )
    return [EscalationOut.model_validate(row) for row in rows]
