"""GET /api/audit (R17): the audit log for administrators and court leaders, itself audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from dispatch_server.audit import service
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.audit.schemas import AuditEventOut, AuditPage, ChainProblemOut, ChainReportOut
from dispatch_server.audit.service import record_success
from dispatch_server.auth.deps import Ctx, CurrentUser, DbSession
from dispatch_server.errors import Forbidden
from dispatch_server.ids import BigId, Id
from dispatch_server.people.models import Person, Role

__all__ = ["AUDIT_ROLES", "actor_of", "client_address", "record_success", "router"]

router = APIRouter(prefix="/api/audit", tags=["audit"])

AUDIT_ROLES = frozenset({Role.ADMIN, Role.LEADER})
"""Who may read the audit log."""


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else ""


def actor_of(user: Person, request: Request) -> service.Actor:
    return service.Actor(
        person_id=user.id, name=user.username, role=user.role.value, source=client_address(request)
    )


async def _allow(context: Ctx, request: Request, user: Person, action: AuditAction) -> service.Actor:
    actor = actor_of(user, request)
    if user.role not in AUDIT_ROLES:
        await service.record_committed(
            database=context.db, action=action, outcome=Outcome.DENIED, actor=actor, object="audit"
        )
        raise Forbidden(f"a {user.role.value} may not read the audit log")
    return actor


@router.get("", response_model=AuditPage, summary="The audit log, newest first")
async def list_audit(
    request: Request,
    context: Ctx,
    db_session: DbSession,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: Annotated[BigId | None, Query(description="Rows older than this id.")] = None,
    actor_id: Id | None = None,
    action: Annotated[str | None, Query(max_length=48, description="Exact, or a prefix with *")] = None,
    object: Annotated[str | None, Query(max_length=256, description="Exact, or a prefix with *")] = None,
    outcome: Outcome | None = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
) -> AuditPage:
    actor = await _allow(context, request, user, AuditAction.AUDIT_READ)
    filters = {
        "before_id": before_id,
        "actor_id": actor_id,
        "action": action,
        "object": object,
        "outcome": outcome,
        "since": from_,
        "until": to,
    }
    events = await service.list_events(db_session=db_session, limit=limit, **filters)  # type: ignore[arg-type]
    await service.record(
        db_session=db_session,
        action=AuditAction.AUDIT_READ,
        outcome=Outcome.SUCCESS,
        actor=actor,
        object="audit",
        detail={"filters": {k: v for k, v in filters.items() if v is not None}, "rows": len(events)},
    )
    await db_session.commit()
    items = [AuditEventOut.model_validate(event) for event in events]
    return AuditPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)


@router.get("/verify", response_model=ChainReportOut, summary="Recompute the audit log's hash chain")
async def verify_audit(
    request: Request, context: Ctx, db_session: DbSession, user: CurrentUser
) -> ChainReportOut:
    actor = await _allow(context, request, user, AuditAction.AUDIT_VERIFY)
    report = await service.verify_chain(db_session=db_session)
    await db_session.rollback()
    await service.record_committed(
        database=context.db,
        action=AuditAction.AUDIT_VERIFY,
        outcome=Outcome.SUCCESS if report.ok else Outcome.FAILURE,
        actor=actor,
        object="audit",
        detail={"rows": report.rows, "head": report.head, "problems": len(report.problems)},
    )
    return ChainReportOut(
        ok=report.ok,
        rows=report.rows,
        head=report.head,
        problems=[ChainProblemOut.model_validate(problem) for problem in report.problems],
    )
