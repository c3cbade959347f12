"""People: creating, finding and listing them; the first admin and the demo users."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.auth import refresh
from dispatch_server.auth.passwords import hash_password, random_password, verify_password
from dispatch_server.errors import Conflict, Invalid, NotFound
from dispatch_server.people.models import Person, Role
from dispatch_server.units.models import Unit

__all__ = [
    "authenticate",
    "create",
    "ensure_demo_people",
    "ensure_first_admin",
    "get",
    "get_many",
    "list_people",
    "update",
]

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
DEMO_PEOPLE = (
    ("commander", "Commander Wang 王指挥长", Role.COMMANDER),
    ("officer1", "Officer Li 李警官", Role.FIELD_OFFICER),
    ("officer2", "Officer Zhao 赵警官", Role.FIELD_OFFICER),
)


async def create(
    *,
    db_session: AsyncSession,
    username: str,
    display_name: str,
    role: Role,
    password: str,
    unit_id: int | None = None,
) -> Person:
    if not USERNAME.match(username):
        raise Invalid("a username is 2-64 characters: lower-case letters, digits, '.', '_' or '-'")
    if len(password) < 8:
        raise Invalid("a password has at least 8 characters")
    existing = await db_session.scalar(select(Person).where(Person.username == username))
    if existing is not None:
        raise Conflict(f"the username {username!r} is taken")
    if unit_id is not None:
        await _unit(db_session, unit_id)
    person = Person(
        username=username,
        display_name=display_name,
        role=role,
        password_hash=hash_password(password),
        unit_id=unit_id,
    )
    db_session.add(person)
    await db_session.flush()
    return person


async def _unit(db_session: AsyncSession, unit_id: int) -> None:
    if await db_session.get(Unit, unit_id) is None:
        raise NotFound(f"there is no unit {unit_id}")


async def update(
    *, db_session: AsyncSession, person_id: int, changes: dict[str, Any], now: datetime
) -> tuple[Person, dict[str, Any]]:
    """Change ``display_name``, ``unit_id`` or ``active``; the person (active or not) and what
    changed. Disabling ends the person's sign-ins (their refresh tokens) in the same transaction."""
    person = await db_session.get(Person, person_id, populate_existing=True)
    if person is None:
        raise NotFound(f"there is no person with id {person_id}")
    changed: dict[str, Any] = {}
    if changes.get("display_name") is not None:
        name = changes["display_name"].strip()
        if not name:
            raise Invalid("a display name cannot be blank")
        if name != person.display_name:
            changed["display_name"] = person.display_name = name
    if "unit_id" in changes and changes["unit_id"] != person.unit_id:
        if changes["unit_id"] is not None:
            await _unit(db_session, changes["unit_id"])
        changed["unit_id"] = person.unit_id = changes["unit_id"]
    if changes.get("active") is not None and changes["active"] != person.active:
        changed["active"] = person.active = changes["active"]
        if not person.active:
            await refresh.revoke_person(db_session=db_session, person_id=person.id, now=now)
    await db_session.flush()
    return person, changed


async def get(*, db_session: AsyncSession, person_id: int) -> Person:
    person = await db_session.get(Person, person_id)
    if person is None or not person.active:
        raise NotFound(f"there is no person with id {person_id}")
    return person


async def get_many(*, db_session: AsyncSession, person_ids: Iterable[int]) -> list[Person]:
    wanted = list(dict.fromkeys(person_ids))
    rows = (await db_session.scalars(select(Person).where(Person.id.in_(wanted), Person.active))).all()
    found = {person.id: person for person in rows}
    missing = [str(pid) for pid in wanted if pid not in found]
    if missing:
        raise NotFound(f"unknown person id(s): {', '.join(missing)}")
    return [found[pid] for pid in wanted]


async def list_people(
    *,
    db_session: AsyncSession,
    role: Role | None = None,
    unit_ids: Iterable[int] | None = None,
    include_disabled: bool = False,
) -> list[Person]:
    query = select(Person).order_by(Person.display_name)
    if not include_disabled:
        query = query.where(Person.active)
    if role is not None:
        query = query.where(Person.role == role)
    if unit_ids is not None:
        query = query.where(Person.unit_id.in_(list(unit_ids)))
    return list((await db_session.scalars(query)).all())


async def authenticate(*, db_session: AsyncSession, username: str, password: str) -> Person | None:
    """The person, if the password is right; None otherwise, in the same time either way."""
    person = await db_session.scalar(
        select(Person).where(Person.username == username.strip().lower(), Person.active)
    )
    # argon2 takes a tenth of a second of CPU by design: off the event loop, which serves everyone.
    ok = await asyncio.to_thread(verify_password, person.password_hash if person else None, password)
    return person if ok and person is not None else None


async def ensure_first_admin(*, db_session: AsyncSession) -> str | None:
    """On the very first start, create ``admin`` with a random password and return it (once). Of
    several processes starting at once on a new database, one does."""
    if await db_session.scalar(select(func.count()).select_from(Person)):
        return None
    password = random_password()
    try:
        async with db_session.begin_nested():
            await create(
                db_session=db_session,
                username="admin",
                display_name="Administrator",
                role=Role.ADMIN,
                password=password,
            )
    except (Conflict, IntegrityError):  # another process made it first
        return None
    return password


async def ensure_demo_people(*, db_session: AsyncSession) -> list[tuple[Person, str]]:
    """Create (or re-key) the demo commander and officers; return each with a fresh password."""
    result = []
    for username, display_name, role in DEMO_PEOPLE:
        password = random_password()
        person = await db_session.scalar(select(Person).where(Person.username == username))
        if person is None:
            person = await create(
                db_session=db_session,
                username=username,
                display_name=display_name,
                role=role,
                password=password,
            )
        else:
            person.password_hash = hash_password(password)
        result.append((person, password))
    return result
