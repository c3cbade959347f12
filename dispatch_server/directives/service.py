"""Directives (R4): issue, deliver, acknowledge. SQL first; the caller pushes afterwards."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.db import utcnow
from dispatch_server.directives.models import Directive, DirectiveTarget, TargetState
from dispatch_server.directives.schemas import DirectiveOut
from dispatch_server.errors import Invalid, NotFound
from dispatch_server.people import service as people
from dispatch_server.people.models import COMMAND_ROLES, Person
from dispatch_server.realtime.bus import Bus, command_channel, person_channel
from dispatch_server.realtime.messages import DirectiveMessage, DirectiveUpdateMessage

__all__ = [
    "acknowledge",
    "announce_issued",
    "announce_update",
    "get",
    "issue",
    "list_for",
    "mark_delivered",
    "pending_for",
]

RECENT = 100


async def issue(
    *,
    db_session: AsyncSession,
    issuer: Person,
    target_ids: list[int],
    text: str,
    ack_deadline_seconds: int,
    now: datetime | None = None,
) -> Directive:
    text = text.strip()
    if not text:
        raise Invalid("a directive needs some text")
    targets = await people.get_many(db_session=db_session, person_ids=target_ids)
    if any(target.id == issuer.id for target in targets):
        raise Invalid("a directive cannot be addressed to its issuer")
    created = now or utcnow()
    directive = Directive(
        text=text,
        issuer_id=issuer.id,
        created_at=created,
        deadline=created + timedelta(seconds=ack_deadline_seconds),
    )
    directive.targets = [DirectiveTarget(person_id=target.id) for target in targets]
    db_session.add(directive)
    await db_session.commit()
    return await get(db_session=db_session, directive_id=directive.id)


async def get(*, db_session: AsyncSession, directive_id: int) -> Directive:
    db_session.expire_all()
    directive = await db_session.scalar(select(Directive).where(Directive.id == directive_id))
    if directive is None:
        raise NotFound(f"there is no directive {directive_id}")
    return directive


async def list_for(*, db_session: AsyncSession, person: Person) -> list[Directive]:
    """Commanders see the recent directives; anyone else those addressed to them."""
    query = select(Directive).order_by(Directive.id.desc()).limit(RECENT)
    if person.role not in COMMAND_ROLES:
        query = query.join(DirectiveTarget).where(DirectiveTarget.person_id == person.id)
    return list((await db_session.scalars(query)).unique().all())


async def pending_for(*, db_session: AsyncSession, person_id: int) -> list[Directive]:
    """Directives this person has not acknowledged yet, oldest first."""
    query = (
        select(Directive)
        .join(DirectiveTarget)
        .where(DirectiveTarget.person_id == person_id, DirectiveTarget.state != TargetState.ACKNOWLEDGED)
        .order_by(Directive.id)
    )
    return list((await db_session.scalars(query)).unique().all())


async def _transition(
    db_session: AsyncSession,
    directive_id: int,
    person_id: int,
    values: dict[str, object],
    *,
    from_states: tuple[TargetState, ...],
) -> bool:
    """Move one target's state with a single conditional UPDATE, so that concurrent deliveries
    and acknowledgements never overwrite each other. True if a row changed."""
    result: CursorResult[Any] = await db_session.execute(  # type: ignore[assignment]
        update(DirectiveTarget)
        .where(
            DirectiveTarget.directive_id == directive_id,
            DirectiveTarget.person_id == person_id,
            DirectiveTarget.state.in_(from_states),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    await db_session.commit()
    if result.rowcount:
        return True
    exists = await db_session.scalar(
        select(DirectiveTarget.id).where(
            DirectiveTarget.directive_id == directive_id, DirectiveTarget.person_id == person_id
        )
    )
    if exists is None:
        raise NotFound(f"there is no directive {directive_id} addressed to you")
    return False


async def mark_delivered(*, db_session: AsyncSession, directive_id: int, person_id: int) -> bool:
    """Record that the target's device received it. True if that changed anything."""
    values = {"state": TargetState.DELIVERED, "delivered_at": utcnow()}
    return await _transition(db_session, directive_id, person_id, values, from_states=(TargetState.SENT,))


async def acknowledge(
    *, db_session: AsyncSession, directive_id: int, person_id: int
) -> tuple[Directive, bool]:
    """Acknowledge for this target. Idempotent: returns the directive and whether it changed."""
    now = utcnow()
    values = {
        "state": TargetState.ACKNOWLEDGED,
        "acknowledged_at": now,
        "delivered_at": func.coalesce(DirectiveTarget.delivered_at, now),
    }
    changed = await _transition(
        db_session, directive_id, person_id, values, from_states=(TargetState.SENT, TargetState.DELIVERED)
    )
    return await get(db_session=db_session, directive_id=directive_id), changed


async def announce_issued(*, bus: Bus, directive: Directive) -> None:
    body = DirectiveOut.model_validate(directive)
    for target in directive.targets:
        await bus.publish(person_channel(target.person_id), DirectiveMessage(directive=body))
    await bus.publish(command_channel(), DirectiveUpdateMessage(directive=body))


async def announce_update(*, bus: Bus, directive: Directive) -> None:
    body = DirectiveOut.model_validate(directive)
    await bus.publish(command_channel(), DirectiveUpdateMessage(directive=body))
    for target in directive.targets:
        await bus.publish(person_channel(target.person_id), DirectiveUpdateMessage(directive=body))
