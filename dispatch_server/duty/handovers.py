"""Handovers (交接班, R10): the outgoing person's notes and the post's open items, accepted by the
incoming person; open items carry forward from handover to handover until someone closes them.

Like every duty change (see :mod:`dispatch_server.duty.service`), each function takes the duty
lock, checks, writes, audits and logs its ``duty`` event in one transaction and commits it; the
caller publishes the returned events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction
from dispatch_server.directives.models import Directive
from dispatch_server.duty import service
from dispatch_server.duty.models import Handover, HandoverItem, OpenItem, Shift
from dispatch_server.duty.schemas import DutyChange
from dispatch_server.errors import Conflict, Forbidden, Invalid, NotFound
from dispatch_server.incidents.models import Incident
from dispatch_server.people import service as people
from dispatch_server.people.models import Person
from dispatch_server.realtime.eventlog import LoggedEvent
from zhihui.settings import DutySettings

__all__ = ["accept_handover", "close_item", "get_handover", "list_handovers", "list_items", "write_handover"]


async def get_handover(*, db_session: AsyncSession, handover_id: int) -> Handover:
    query = select(Handover).where(Handover.id == handover_id).execution_options(populate_existing=True)
    handover = await db_session.scalar(query)
    if handover is None:
        raise NotFound(f"there is no handover {handover_id}")
    return handover


async def _check_links(db_session: AsyncSession, item: dict[str, Any]) -> None:
    if item.get("directive_id") is not None and await db_session.get(Directive, item["directive_id"]) is None:
        raise NotFound(f"there is no directive {item['directive_id']}")
    if item.get("incident_id") is not None and await db_session.get(Incident, item["incident_id"]) is None:
        raise NotFound(f"there is no incident {item['incident_id']}")
    if item.get("alert_id") is not None:
        from dispatch_server.alerts.models import Alert

        if await db_session.get(Alert, item["alert_id"]) is None:
            raise NotFound(f"there is no alert {item['alert_id']}")


async def _next_on(db_session: AsyncSession, seat: str, after: Person, now: datetime) -> Person | None:
    """The next person rostered on the post, other than ``after``: the soonest shift not yet over."""
    shift = await db_session.scalar(
        select(Shift)
        .where(Shift.post == seat, Shift.person_id != after.id, Shift.ends_at > now)
        .order_by(Shift.starts_at, Shift.id)
        .limit(1)
    )
    return shift.person if shift is not None else None


async def write_handover(
    *,
    db_session: AsyncSession,
    settings: DutySettings,
    writer: Person,
    actor: audit.Actor,
    seat: str,
    notes: str,
    to_person_id: int | None,
    items: list[dict[str, Any]],
    close_item_ids: list[int],
    now: datetime,
) -> tuple[Handover, list[LoggedEvent]]:
    """The outgoing person hands the post over: notes, the post's open items (those still open
    carry forward; ``close_item_ids`` are closed first; ``items`` are new), and whom to."""
    chosen = service.find_post(settings, seat)
    notes = notes.strip()
    if not notes:
        raise Invalid("a handover needs notes (even 'nothing to report')")
    await service.hold(db_session)
    if await service.open_sign_in(db_session, writer.id, seat) is None:
        raise Conflict(f"sign in on {seat} first: the person on duty there writes its handover")
    if to_person_id is not None:
        to_person: Person | None = await people.get(db_session=db_session, person_id=to_person_id)
        assert to_person is not None
        if to_person.id == writer.id:
            raise Invalid("a handover goes to someone else")
        service.check_may_hold(chosen, to_person)
    else:
        to_person = await _next_on(db_session, seat, writer, now)
    for item_id in dict.fromkeys(close_item_ids):
        item = await db_session.get(OpenItem, item_id)
        if item is None or item.post != seat:
            raise NotFound(f"there is no open item {item_id} on {seat}")
        if item.closed_at is None:
            item.closed_at, item.closed_by_id, item.closed_note = now, writer.id, "closed at the handover"
    new_items = []
    for fields in items:
        text = str(fields.get("text", "")).strip()
        if not text:
            raise Invalid("an open item needs some text")
        await _check_links(db_session, fields)
        new_item = OpenItem(
            post=seat,
            text=text,
            directive_id=fields.get("directive_id"),
            incident_id=fields.get("incident_id"),
            alert_id=fields.get("alert_id"),
            created_by_id=writer.id,
            created_at=now,
            closed_note="",
        )
        db_session.add(new_item)
        new_items.append(new_item)
    handover = Handover(
        post=seat,
        from_person_id=writer.id,
        to_person_id=to_person.id if to_person is not None else None,
        notes=notes,
        written_at=now,
    )
    db_session.add(handover)
    await db_session.flush()
    handover_id = handover.id
    carried = (
        await db_session.scalars(
            select(OpenItem.id)
            .where(OpenItem.post == seat, OpenItem.closed_at.is_(None))
            .order_by(OpenItem.id)
        )
    ).all()
    db_session.add_all(HandoverItem(handover_id=handover_id, item_id=item_id) for item_id in carried)
    whom = to_person.display_name if to_person is not None else "whoever takes over"
    summary = f"{writer.display_name} handed {seat} over to {whom} ({len(carried)} open item(s))"
    logged = await service.finish(
        db_session,
        actor=actor,
        action=AuditAction.DUTY_HANDOVER,
        object=f"handover:{handover_id}",
        detail={
            "post": seat,
            "to_person_id": handover.to_person_id,
            "items": list(carried),
            "new_items": [item.id for item in new_items],
            "closed_items": list(dict.fromkeys(close_item_ids)),
        },
        events=[
            service.duty_event(
                DutyChange.HANDOVER_WRITTEN, summary, now, seat=seat, person=writer, ref=handover_id
            )
        ],
    )
    return await get_handover(db_session=db_session, handover_id=handover_id), logged


async def accept_handover(
    *,
    db_session: AsyncSession,
    settings: DutySettings,
    person: Person,
    actor: audit.Actor,
    handover_id: int,
    now: datetime,
) -> tuple[Handover, list[LoggedEvent]]:
    """The incoming person accepts the handover. Accepting it again returns it as it stands."""
    await service.hold(db_session)
    handover = await get_handover(db_session=db_session, handover_id=handover_id)
    if handover.accepted_by_id is not None:
        if handover.accepted_by_id == person.id:
            await service.release(db_session)
            return handover, []
        accepted_by = handover.accepted_by.display_name if handover.accepted_by else "someone"
        raise Conflict(f"handover {handover_id} was accepted by {accepted_by} already")
    if handover.from_person_id == person.id:
        raise Conflict("the outgoing person does not accept their own handover")
    if handover.to_person_id is not None and handover.to_person_id != person.id:
        to_name = handover.to_person.display_name if handover.to_person else "someone else"
        raise Forbidden(f"handover {handover_id} is for {to_name}")
    service.check_may_hold(service.find_post(settings, handover.post), person)
    handover.accepted_at, handover.accepted_by_id = now, person.id
    seat, giver = handover.post, handover.from_person.display_name
    summary = f"{person.display_name} accepted the handover of {seat} from {giver}"
    logged = await service.finish(
        db_session,
        actor=actor,
        action=AuditAction.DUTY_HANDOVER_ACCEPT,
        object=f"handover:{handover_id}",
        detail={"post": seat},
        events=[
            service.duty_event(
                DutyChange.HANDOVER_ACCEPTED, summary, now, seat=seat, person=person, ref=handover_id
            )
        ],
    )
    return await get_handover(db_session=db_session, handover_id=handover_id), logged


async def list_handovers(
    *,
    db_session: AsyncSession,
    seat: str | None = None,
    pending: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Handover]:
    """Handovers, newest first."""
    query = select(Handover)
    if seat is not None:
        query = query.where(Handover.post == seat)
    if pending is not None:
        query = query.where(Handover.accepted_at.is_(None) if pending else Handover.accepted_at.is_not(None))
    if since is not None:
        query = query.where(Handover.written_at >= since)
    if until is not None:
        query = query.where(Handover.written_at < until)
    page = query.order_by(Handover.written_at.desc(), Handover.id.desc()).limit(limit).offset(offset)
    return list((await db_session.scalars(page)).all())


async def list_items(
    *,
    db_session: AsyncSession,
    seat: str | None = None,
    open_only: bool = True,
    limit: int = 100,
    offset: int = 0,
) -> list[OpenItem]:
    """Open items (or all), oldest first."""
    query = select(OpenItem)
    if seat is not None:
        query = query.where(OpenItem.post == seat)
    if open_only:
        query = query.where(OpenItem.closed_at.is_(None))
    page = query.order_by(OpenItem.id).limit(limit).offset(offset)
    return list((await db_session.scalars(page.execution_options(populate_existing=True))).all())


async def close_item(
    *, db_session: AsyncSession, person: Person, actor: audit.Actor, item_id: int, note: str, now: datetime
) -> tuple[OpenItem, list[LoggedEvent]]:
    """An open item is done. Closing it again returns it as it stands."""
    await service.hold(db_session)
    item = await db_session.get(OpenItem, item_id, populate_existing=True)
    if item is None:
        raise NotFound(f"there is no open item {item_id}")
    if item.closed_at is not None:
        await service.release(db_session)
        return item, []
    item.closed_at, item.closed_by_id, item.closed_note = now, person.id, note.strip()
    seat = item.post
    summary = f"{person.display_name} closed an open item on {seat}: {item.text[:80]}"
    logged = await service.finish(
        db_session,
        actor=actor,
        action=AuditAction.DUTY_ITEM_CLOSE,
        object=f"item:{item_id}",
        detail={"post": seat, "note": note.strip()},
        events=[
            service.duty_event(DutyChange.ITEM_CLOSED, summary, now, seat=seat, person=person, ref=item_id)
        ],
    )
    closed = await db_session.get(OpenItem, item_id, populate_existing=True)
    assert closed is not None
    return closed, logged
