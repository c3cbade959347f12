"""The archive's retention routes (R2, R17): evidence holds placed and lifted, a recording's
retention, and deletion, which is refused (409, with the reason) while the recording is live, held,
inside its retention or not intact. Every attempt is audited with its outcome, refusals included."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from dispatch_server.archive import retention
from dispatch_server.archive.models import RecordingHold
from dispatch_server.archive.schemas import DeleteIn, DeletionOut, HoldIn, HoldOut, LiftIn, RetentionOut
from dispatch_server.archive.views import ARCHIVE_ROLES, _allow, _archive
from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.audit.views import record_success
from dispatch_server.auth.deps import Ctx, CurrentUser, DbSession, Now
from dispatch_server.errors import Conflict, DomainError
from dispatch_server.ids import Id
from dispatch_server.people.models import COMMAND_ROLES, Role
from dispatch_server.people.schemas import UserOut

__all__ = ["DELETE_ROLES", "HOLD_ROLES", "router"]

router = APIRouter(tags=["archive"])

HOLD_ROLES = COMMAND_ROLES
"""Who may place and lift evidence holds: commanders, leaders, administrators."""
DELETE_ROLES = frozenset({Role.ADMIN})
"""Who may ask for a recording to be deleted (and then only outside retention, without a hold)."""


def _hold_out(hold: RecordingHold) -> HoldOut:
    return HoldOut(
        id=hold.id,
        stream_id=hold.stream_id,
        incident_id=hold.incident_id,
        reason=hold.reason,
        placed_by=UserOut.model_validate(hold.placed_by),
        placed_at=hold.placed_at,
        active=hold.active,
        lifted_by=UserOut.model_validate(hold.lifted_by) if hold.lifted_by is not None else None,
        lifted_at=hold.lifted_at,
        lift_reason=hold.lift_reason,
    )


async def _audited_failure(
    context: Ctx, actor: audit.Actor, action: AuditAction, object: str, error: DomainError, **detail: object
) -> None:
    """A refusal by the rules (409) is ``denied``; anything else that did not work, ``failure``."""
    await audit.record_committed(
        database=context.db,
        action=action,
        outcome=Outcome.DENIED if isinstance(error, Conflict) else Outcome.FAILURE,
        actor=actor,
        object=object,
        detail={**detail, "error": error.message},
    )


# -- holds -------------------------------------------------------------------------------------------


@router.get("/api/holds", response_model=list[HoldOut], summary="Evidence holds, newest first")
async def list_holds(
    request: Request,
    context: Ctx,
    db_session: DbSession,
    user: CurrentUser,
    active: Annotated[bool | None, Query(description="Only active (true) or lifted (false) holds")] = None,
    stream_id: Annotated[
        str | None, Query(max_length=96, description="Holds that apply to this stream (its incidents' too)")
    ] = None,
    incident_id: Id | None = None,
) -> list[HoldOut]:
    object = f"stream:{stream_id}" if stream_id else f"incident:{incident_id}" if incident_id else "holds"
    actor = await _allow(context, request, user, ARCHIVE_ROLES, AuditAction.ARCHIVE_RETENTION, object)
    holds = await retention.list_holds(
        db_session=db_session, active=active, stream_id=stream_id, incident_id=incident_id
    )
    await record_success(
        db_session,
        actor,
        AuditAction.ARCHIVE_RETENTION,
        object,
        {"holds": [hold.id for hold in holds], "active": active},
    )
    await db_session.commit()
    return [_hold_out(hold) for hold in holds]


@router.post("/api/holds", response_model=HoldOut, status_code=201, summary="Place an evidence hold")
async def place_hold(
    body: HoldIn, request: Request, context: Ctx, db_session: DbSession, user: CurrentUser, now: Now
) -> HoldOut:
    object = f"incident:{body.incident_id}" if body.incident_id is not None else f"stream:{body.stream_id}"
    actor = await _allow(context, request, user, HOLD_ROLES, AuditAction.ARCHIVE_HOLD, object)
    try:
        hold = await retention.place_hold(
            db_session=db_session,
            person=user,
            reason=body.reason,
            now=now,
            stream_id=body.stream_id,
            incident_id=body.incident_id,
        )
    except DomainError as error:
        await db_session.rollback()
        await _audited_failure(context, actor, AuditAction.ARCHIVE_HOLD, object, error, reason=body.reason)
        raise
    await record_success(
        db_session, actor, AuditAction.ARCHIVE_HOLD, object, {"hold": hold.id, "reason": hold.reason}
    )
    await db_session.commit()
    return _hold_out(hold)


@router.post("/api/holds/{hold_id}/lift", response_model=HoldOut, summary="Lift an evidence hold")
async def lift_hold(
    hold_id: Id,
    body: LiftIn,
    request: Request,
    context: Ctx,
    db_session: DbSession,
    user: CurrentUser,
    now: Now,
) -> HoldOut:
    object = f"hold:{hold_id}"
    actor = await _allow(context, request, user, HOLD_ROLES, AuditAction.ARCHIVE_HOLD_LIFT, object)
    try:
        hold = await retention.lift_hold(
            db_session=db_session, hold_id=hold_id, person=user, reason=body.reason, now=now
        )
    except DomainError as error:
        await db_session.rollback()
        await _audited_failure(
            context, actor, AuditAction.ARCHIVE_HOLD_LIFT, object, error, reason=body.reason
        )
        raise
    await record_success(
        db_session,
        actor,
        AuditAction.ARCHIVE_HOLD_LIFT,
        object,
        {
            "stream_id": hold.stream_id,
            "incident_id": hold.incident_id,
            "placed_by": hold.placed_by.username,
            "placed_at": hold.placed_at.isoformat(),
            "hold_reason": hold.reason,
            "reason": hold.lift_reason,
        },
    )
    await db_session.commit()
    return _hold_out(hold)


# -- retention and deletion --------------------------------------------------------------------------


@router.get(
    "/api/recordings/{stream_id}/retention",
    response_model=RetentionOut,
    summary="How long a recording is kept, and what holds it",
)
async def get_retention(
    stream_id: str, request: Request, context: Ctx, db_session: DbSession, user: CurrentUser, now: Now
) -> RetentionOut:
    object = f"stream:{stream_id}"
    actor = await _allow(context, request, user, ARCHIVE_ROLES, AuditAction.ARCHIVE_RETENTION, object)
    days = context.settings.recording.retention_days
    try:
        status = await retention.retention_of(db_session=db_session, stream_id=stream_id, retention_days=days)
    except DomainError as error:
        await _audited_failure(context, actor, AuditAction.ARCHIVE_RETENTION, object, error)
        raise
    refused = retention.refusal(status, now)
    await record_success(
        db_session,
        actor,
        AuditAction.ARCHIVE_RETENTION,
        object,
        {"kept_until": status.kept_until.isoformat(), "holds": [hold.id for hold in status.holds]},
    )
    await db_session.commit()
    return RetentionOut(
        stream_id=stream_id,
        retention_days=days,
        ended_at=status.ended_at,
        kept_until=status.kept_until,
        holds=[_hold_out(hold) for hold in status.holds],
        deletable=refused is None,
        refusal=refused,
        deleted_at=status.deleted.deleted_at if status.deleted is not None else None,
    )


@router.delete(
    "/api/recordings/{stream_id}",
    response_model=DeletionOut,
    summary="Delete a recording whose retention is over and that no hold keeps",
)
async def delete_recording(
    stream_id: str,
    request: Request,
    context: Ctx,
    db_session: DbSession,
    user: CurrentUser,
    now: Now,
    body: DeleteIn | None = None,
) -> DeletionOut:
    """Refused with 409 and the reason while the recording is live, under an evidence hold, inside
    its retention or not intact. An allowed deletion tombstones the segments in the stream's
    manifest, removes their files and records the deletion in the catalog. Every attempt is audited."""
    object = f"stream:{stream_id}"
    actor = await _allow(context, request, user, DELETE_ROLES, AuditAction.ARCHIVE_DELETE, object)
    days = context.settings.recording.retention_days
    body = body or DeleteIn()
    try:
        deletion = await retention.delete_recording(
            db_session=db_session,
            root=_archive(request).root,
            stream_id=stream_id,
            retention_days=days,
            now=now,
            reason=body.reason,
            deleted_by=f"{user.username} ({user.role.value})",
            deleted_by_id=user.id,
        )
    except DomainError as error:
        await db_session.rollback()
        await _audited_failure(
            context, actor, AuditAction.ARCHIVE_DELETE, object, error, reason=body.reason, retention_days=days
        )
        raise
    await record_success(
        db_session, actor, AuditAction.ARCHIVE_DELETE, object, retention.deletion_detail(deletion)
    )
    await db_session.commit()
    return DeletionOut.model_validate(deletion)
