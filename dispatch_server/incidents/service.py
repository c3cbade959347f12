"""Incidents (R5): open, change, staff and share them; their timeline.

Who sees what: the command room (commanders, leaders, duty officers, admins) sees every incident;
a field officer only those it is assigned to; an upper-court observer only those shared with it;
an external participant none. An incident someone may not see is, to them, one that does not
exist (404), so ids reveal nothing.

Timeline entries are written in the caller's transaction by :func:`add_entry`, so an entry
commits together with what it records; so is the audit record of each change (R17), made as
``audit_actor``, which the views take from the request. Service functions take ``now`` from the
caller's clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.errors import Forbidden, Invalid, NotFound
from dispatch_server.incidents.models import (
    Assignment,
    DirectiveIncident,
    Incident,
    IncidentKind,
    IncidentStatus,
    Share,
    TimelineEntry,
    TimelineKind,
)
from dispatch_server.people import service as people
from dispatch_server.people.models import COMMAND_ROLES, WATCH_ROLES, Person, Role

__all__ = [
    "COMMANDING_ROLES",
    "MANAGE_ROLES",
    "NOTE_ROLES",
    "READ_ROLES",
    "add_entry",
    "add_note",
    "add_shares",
    "assign",
    "get",
    "get_visible",
    "incident_of_directive",
    "list_visible",
    "open_incident",
    "open_incidents_of",
    "record_stream_change",
    "share",
    "shared_with",
    "timeline",
    "unassign",
    "unshare",
    "update",
]

READ_ROLES = frozenset({*WATCH_ROLES, Role.FIELD_OFFICER, Role.UPPER_OBSERVER})
"""Who may see incidents at all (each only those allowed, see above)."""
MANAGE_ROLES = frozenset({*COMMAND_ROLES, Role.DUTY_OFFICER})
"""Who may open incidents, change them and staff them."""
COMMANDING_ROLES = frozenset({Role.COMMANDER, Role.LEADER})
"""Who may be an incident's commander."""
NOTE_ROLES = frozenset({*WATCH_ROLES, Role.FIELD_OFFICER})
"""Who may add notes (to incidents they see)."""


def _visible(query: Select[Any], role: Role, person_id: int) -> Select[Any]:
    if role in WATCH_ROLES:
        return query
    if role is Role.FIELD_OFFICER:
        mine = select(Assignment.incident_id).where(Assignment.person_id == person_id)
    elif role is Role.UPPER_OBSERVER:
        mine = select(Share.incident_id).where(Share.person_id == person_id)
    else:
        return query.where(false())
    return query.where(Incident.id.in_(mine))


async def get(*, db_session: AsyncSession, incident_id: int) -> Incident:
    """The incident, read afresh with its officers, whoever asks (for the rules, not for people)."""
    query = select(Incident).where(Incident.id == incident_id).execution_options(populate_existing=True)
    incident = await db_session.scalar(query)
    if incident is None:
        raise NotFound(f"there is no incident {incident_id}")
    return incident


async def get_visible(*, db_session: AsyncSession, person: Person, incident_id: int) -> Incident:
    """The incident, if this person may see it; NotFound otherwise (also when it does not exist).
    Read afresh, with its officers."""
    query = (
        _visible(select(Incident), person.role, person.id)
        .where(Incident.id == incident_id)
        .execution_options(populate_existing=True)
    )
    incident = await db_session.scalar(query)
    if incident is None:
        raise NotFound(f"there is no incident {incident_id}")
    return incident


async def list_visible(
    *,
    db_session: AsyncSession,
    person: Person,
    status: IncidentStatus | None = None,
    kind: IncidentKind | None = None,
    case_number: str | None = None,
    officer_id: int | None = None,
    text: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Incident], int]:
    """One page of the incidents this person may see, newest first, and how many match in all."""
    query = _visible(select(Incident), person.role, person.id)
    if status is not None:
        query = query.where(Incident.status == status)
    if kind is not None:
        query = query.where(Incident.kind == kind)
    if case_number:
        query = query.where(Incident.case_number == case_number)
    if officer_id is not None:
        query = query.where(
            Incident.id.in_(select(Assignment.incident_id).where(Assignment.person_id == officer_id))
        )
    if text:
        pattern = f"%{text.lower()}%"
        query = query.where(
            or_(func.lower(Incident.title).like(pattern), func.lower(Incident.place).like(pattern))
        )
    total = await db_session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.order_by(Incident.id.desc()).limit(limit).offset(offset)
    return list((await db_session.scalars(page)).unique().all()), total


async def _audit(
    db_session: AsyncSession,
    audit_actor: audit.Actor,
    action: AuditAction,
    incident_id: int,
    **detail: Any,
) -> None:
    await audit.record(
        db_session=db_session,
        action=action,
        outcome=Outcome.SUCCESS,
        actor=audit_actor,
        object=f"incident:{incident_id}",
        detail=detail,
    )


async def _commander(db_session: AsyncSession, person_id: int) -> Person:
    person = await people.get(db_session=db_session, person_id=person_id)
    if person.role not in COMMANDING_ROLES:
        raise Invalid(
            f"{person.username} is a {person.role.value}: an incident's commander is a commander or leader"
        )
    return person


async def _officers(db_session: AsyncSession, person_ids: Iterable[int]) -> list[Person]:
    officers = await people.get_many(db_session=db_session, person_ids=person_ids)
    wrong = [p.username for p in officers if p.role is not Role.FIELD_OFFICER]
    if wrong:
        raise Invalid(f"only field officers are assigned to incidents, not {', '.join(wrong)}")
    return officers


async def open_incident(
    *,
    db_session: AsyncSession,
    opener: Person,
    kind: IncidentKind,
    title: str,
    case_number: str = "",
    place: str = "",
    commander_id: int | None = None,
    officer_ids: Iterable[int] = (),
    now: datetime,
    audit_actor: audit.Actor,
) -> Incident:
    if opener.role not in MANAGE_ROLES:
        raise Forbidden(f"a {opener.role.value} may not open incidents")
    title = title.strip()
    if not title:
        raise Invalid("an incident needs a title")
    if commander_id is not None:
        commander: Person | None = await _commander(db_session, commander_id)
    else:
        commander = opener if opener.role in COMMANDING_ROLES else None
    officers = await _officers(db_session, officer_ids)
    incident = Incident(
        kind=kind,
        title=title,
        case_number=case_number.strip(),
        place=place.strip(),
        commander_id=commander.id if commander else None,
        opened_by_id=opener.id,
        opened_at=now,
    )
    incident.assignments = [Assignment(person_id=officer.id, assigned_at=now) for officer in officers]
    db_session.add(incident)
    await db_session.flush()
    add_entry(
        db_session,
        incident.id,
        TimelineKind.OPENED,
        f"{opener.display_name} opened the {kind.value} incident “{title}”",
        at=now,
        actor_id=opener.id,
    )
    for officer in officers:
        _assigned_entry(db_session, incident.id, opener, officer, now)
    detail = {
        "kind": kind.value,
        "title": title,
        "case_number": incident.case_number,
        "place": incident.place,
        "commander_id": incident.commander_id,
        "officer_ids": [officer.id for officer in officers],
    }
    await _audit(db_session, audit_actor, AuditAction.INCIDENT_OPEN, incident.id, **detail)
    await db_session.commit()
    return await get_visible(db_session=db_session, person=opener, incident_id=incident.id)


def _assigned_entry(
    db_session: AsyncSession, incident_id: int, actor: Person, officer: Person, now: datetime
) -> None:
    add_entry(
        db_session,
        incident_id,
        TimelineKind.OFFICER_ASSIGNED,
        f"{officer.display_name} assigned",
        at=now,
        actor_id=actor.id,
        person_id=officer.id,
    )


async def update(
    *,
    db_session: AsyncSession,
    actor: Person,
    incident_id: int,
    changes: dict[str, Any],
    now: datetime,
    audit_actor: audit.Actor,
) -> Incident:
    """Change the given fields (kind, title, case_number, place, commander_id, status). Audited as
    closing or reopening when the status changes, otherwise as an update; not at all when nothing
    changed."""
    incident = await get_visible(db_session=db_session, person=actor, incident_id=incident_id)
    described = []
    changed: dict[str, Any] = {}
    if changes.get("commander_id") is not None:
        commander = await _commander(db_session, changes["commander_id"])
        if commander.id != incident.commander_id:
            incident.commander_id = commander.id
            described.append(f"commander: {commander.display_name}")
            changed["commander_id"] = commander.id
    for field in ("kind", "title", "case_number", "place"):
        value = changes.get(field)
        if value is not None:
            value = value.strip() if isinstance(value, str) else value
            if field == "title" and not value:
                raise Invalid("an incident needs a title")
            if value != getattr(incident, field):
                setattr(incident, field, value)
                described.append(f"{field.replace('_', ' ')}: {value}")
                changed[field] = value
    if described:
        add_entry(
            db_session, incident.id, TimelineKind.UPDATED, "; ".join(described), at=now, actor_id=actor.id
        )
    action = AuditAction.INCIDENT_UPDATE
    status = changes.get("status")
    if status is not None and status != incident.status:
        changed["status"] = status
        closed = status is IncidentStatus.CLOSED
        action = AuditAction.INCIDENT_CLOSE if closed else AuditAction.INCIDENT_REOPEN
        incident.status = status
        incident.closed_at = now if closed else None
        add_entry(
            db_session,
            incident.id,
            TimelineKind.CLOSED if closed else TimelineKind.REOPENED,
            f"{actor.display_name} {'closed' if closed else 'reopened'} the incident",
            at=now,
            actor_id=actor.id,
        )
    if changed:
        await _audit(db_session, audit_actor, action, incident.id, **changed)
    await db_session.commit()
    return await get_visible(db_session=db_session, person=actor, incident_id=incident_id)


async def assign(
    *,
    db_session: AsyncSession,
    actor: Person,
    incident_id: int,
    person_ids: list[int],
    now: datetime,
    audit_actor: audit.Actor,
) -> Incident:
    """Put officers on the incident (those already on it stay as they are, and are not audited)."""
    incident = await get_visible(db_session=db_session, person=actor, incident_id=incident_id)
    officers = await _officers(db_session, person_ids)
    present = {assignment.person_id for assignment in incident.assignments}
    added = []
    for officer in officers:
        if officer.id not in present:
            db_session.add(Assignment(incident_id=incident.id, person_id=officer.id, assigned_at=now))
            _assigned_entry(db_session, incident.id, actor, officer, now)
            added.append(officer.id)
    if added:
        await _audit(db_session, audit_actor, AuditAction.INCIDENT_ASSIGN, incident.id, officer_ids=added)
    await db_session.commit()
    return await get_visible(db_session=db_session, person=actor, incident_id=incident_id)


async def unassign(
    *,
    db_session: AsyncSession,
    actor: Person,
    incident_id: int,
    person_id: int,
    now: datetime,
    audit_actor: audit.Actor,
) -> Incident:
    incident = await get_visible(db_session=db_session, person=actor, incident_id=incident_id)
    assignment = next((a for a in incident.assignments if a.person_id == person_id), None)
    if assignment is None:
        raise NotFound(f"person {person_id} is not on incident {incident_id}")
    add_entry(
        db_session,
        incident.id,
        TimelineKind.OFFICER_REMOVED,
        f"{assignment.person.display_name} taken off",
        at=now,
        actor_id=actor.id,
        person_id=person_id,
    )
    await db_session.execute(delete(Assignment).where(Assignment.id == assignment.id))
    await _audit(db_session, audit_actor, AuditAction.INCIDENT_UNASSIGN, incident.id, person_id=person_id)
    await db_session.commit()
    return await get_visible(db_session=db_session, person=actor, incident_id=incident_id)


async def share(
    *,
    db_session: AsyncSession,
    actor: Person,
    incident_id: int,
    person_ids: list[int],
    now: datetime,
    audit_actor: audit.Actor,
) -> list[Person]:
    """Share the incident with upper-court observers; who it is shared with now. Audited when it
    was not shared with some of them before."""
    incident = await get_visible(db_session=db_session, person=actor, incident_id=incident_id)
    observers = await people.get_many(db_session=db_session, person_ids=person_ids)
    added = await add_shares(db_session, incident.id, observers, actor=actor, now=now)
    if added:
        person_ids = [observer.id for observer in added]
        await _audit(db_session, audit_actor, AuditAction.INCIDENT_SHARE, incident.id, person_ids=person_ids)
    await db_session.commit()
    return await shared_with(db_session=db_session, incident_id=incident.id)


async def add_shares(
    db_session: AsyncSession, incident_id: int, observers: Iterable[Person], *, actor: Person, now: datetime
) -> list[Person]:
    """Share the incident with these upper-court observers, in the caller's transaction; those it
    was not shared with before."""
    observers = list(observers)
    wrong = [p.username for p in observers if p.role is not Role.UPPER_OBSERVER]
    if wrong:
        raise Invalid(f"incidents are shared with upper-court observers, not {', '.join(wrong)}")
    present = set(
        (await db_session.scalars(select(Share.person_id).where(Share.incident_id == incident_id))).all()
    )
    added = []
    for observer in observers:
        if observer.id not in present:
            db_session.add(Share(incident_id=incident_id, person_id=observer.id, shared_at=now))
            add_entry(
                db_session,
                incident_id,
                TimelineKind.SHARED,
                f"shared with {observer.display_name}",
                at=now,
                actor_id=actor.id,
                person_id=observer.id,
            )
            added.append(observer)
    return added


async def unshare(
    *,
    db_session: AsyncSession,
    actor: Person,
    incident_id: int,
    person_id: int,
    now: datetime,
    audit_actor: audit.Actor,
) -> None:
    incident = await get_visible(db_session=db_session, person=actor, incident_id=incident_id)
    removed = await db_session.execute(
        delete(Share).where(Share.incident_id == incident.id, Share.person_id == person_id)
    )
    if not removed.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"incident {incident_id} is not shared with person {person_id}")
    add_entry(
        db_session,
        incident.id,
        TimelineKind.UNSHARED,
        f"no longer shared with person {person_id}",
        at=now,
        actor_id=actor.id,
        person_id=person_id,
    )
    await _audit(db_session, audit_actor, AuditAction.INCIDENT_UNSHARE, incident.id, person_id=person_id)
    await db_session.commit()


async def shared_with(*, db_session: AsyncSession, incident_id: int) -> list[Person]:
    query = select(Person).join(Share, Share.person_id == Person.id).where(Share.incident_id == incident_id)
    return list((await db_session.scalars(query.order_by(Share.id))).all())


async def add_note(
    *,
    db_session: AsyncSession,
    author: Person,
    incident_id: int,
    text: str,
    now: datetime,
    audit_actor: audit.Actor,
) -> TimelineEntry:
    """A note on the timeline; the audit record names the entry, not its text."""
    if author.role not in NOTE_ROLES:
        raise Forbidden(f"a {author.role.value} may not add notes")
    incident = await get_visible(db_session=db_session, person=author, incident_id=incident_id)
    text = text.strip()
    if not text:
        raise Invalid("a note needs some text")
    entry = add_entry(db_session, incident.id, TimelineKind.NOTE, text, at=now, actor_id=author.id)
    await db_session.flush()
    entry_id = entry.id
    await _audit(db_session, audit_actor, AuditAction.INCIDENT_NOTE, incident.id, entry_id=entry_id)
    await db_session.commit()
    return (await db_session.scalars(select(TimelineEntry).where(TimelineEntry.id == entry_id))).one()


async def timeline(
    *, db_session: AsyncSession, incident_id: int, after: int = 0, limit: int = 100
) -> list[TimelineEntry]:
    """Entries after the entry id ``after``, oldest first."""
    query = (
        select(TimelineEntry)
        .where(TimelineEntry.incident_id == incident_id, TimelineEntry.id > after)
        .order_by(TimelineEntry.id)
        .limit(limit)
    )
    return list((await db_session.scalars(query)).all())


def add_entry(
    db_session: AsyncSession,
    incident_id: int,
    kind: TimelineKind,
    summary: str,
    *,
    at: datetime,
    actor_id: int | None = None,
    person_id: int | None = None,
    directive_id: int | None = None,
    escalation_id: int | None = None,
    stream_id: str | None = None,
    subject: str | None = None,
) -> TimelineEntry:
    """Add a timeline entry in the caller's transaction."""
    entry = TimelineEntry(
        incident_id=incident_id,
        kind=kind,
        summary=summary,
        at=at,
        actor_id=actor_id,
        person_id=person_id,
        directive_id=directive_id,
        escalation_id=escalation_id,
        stream_id=stream_id,
        subject=subject,
    )
    db_session.add(entry)
    return entry


async def incident_of_directive(*, db_session: AsyncSession, directive_id: int) -> Incident | None:
    link = await db_session.get(DirectiveIncident, directive_id)
    return await db_session.get(Incident, link.incident_id) if link is not None else None


async def open_incidents_of(*, db_session: AsyncSession, person_id: int) -> list[int]:
    """The open incidents this officer is assigned to."""
    query = (
        select(Incident.id)
        .join(Assignment, Assignment.incident_id == Incident.id)
        .where(Assignment.person_id == person_id, Incident.status == IncidentStatus.OPEN)
    )
    return list((await db_session.scalars(query)).all())


async def record_stream_change(
    *, db_session: AsyncSession, stream_id: str, officer: Person, up: bool, at: datetime
) -> None:
    """A stream of an officer went up or down: a timeline entry on each open incident it is on."""
    for incident_id in await open_incidents_of(db_session=db_session, person_id=officer.id):
        add_entry(
            db_session,
            incident_id,
            TimelineKind.STREAM_UP if up else TimelineKind.STREAM_DOWN,
            f"{officer.display_name}'s stream {'went live' if up else 'ended'}",
            at=at,
            person_id=officer.id,
            stream_id=stream_id,
        )
    await db_session.commit()
