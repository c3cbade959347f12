"""Units (R15): create, change, list and remove them; who is in a unit and its sub-units.

A unit that people belong to, that has sub-units, or that directives were sent to is not removed
(409): the record of who was directed stays readable. Unit trees are small (tens of units), so
sub-units are walked one level per query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.directives.models import Directive
from dispatch_server.errors import Conflict, Invalid, NotFound
from dispatch_server.people.models import Person
from dispatch_server.units.models import Unit

__all__ = ["create", "delete", "get", "list_units", "member_counts", "members", "subtree", "update"]


async def get(*, db_session: AsyncSession, unit_id: int) -> Unit:
    unit = await db_session.get(Unit, unit_id, populate_existing=True)
    if unit is None:
        raise NotFound(f"there is no unit {unit_id}")
    return unit


async def _check_name(db_session: AsyncSession, name: str, *, other_than: int | None = None) -> str:
    name = name.strip()
    if not name:
        raise Invalid("a unit needs a name")
    query = select(Unit.id).where(func.lower(Unit.name) == name.lower())
    if other_than is not None:
        query = query.where(Unit.id != other_than)
    if await db_session.scalar(query) is not None:
        raise Conflict(f"there is already a unit named {name!r}")
    return name


async def create(*, db_session: AsyncSession, name: str, parent_id: int | None, now: datetime) -> Unit:
    name = await _check_name(db_session, name)
    if parent_id is not None:
        await get(db_session=db_session, unit_id=parent_id)
    unit = Unit(name=name, parent_id=parent_id, created_at=now)
    db_session.add(unit)
    await db_session.flush()
    return unit


async def subtree(*, db_session: AsyncSession, unit_id: int) -> list[int]:
    """The unit and every unit under it, top down."""
    found = [unit_id]
    level = [unit_id]
    while level:
        level = list((await db_session.scalars(select(Unit.id).where(Unit.parent_id.in_(level)))).all())
        level = [child for child in level if child not in found]  # a cycle would be a bug; never loop
        found.extend(level)
    return found


async def update(
    *, db_session: AsyncSession, unit_id: int, changes: dict[str, Any]
) -> tuple[Unit, dict[str, Any]]:
    """Change the given fields (``name``, ``parent_id``); the unit and what changed."""
    unit = await get(db_session=db_session, unit_id=unit_id)
    changed: dict[str, Any] = {}
    if changes.get("name") is not None:
        name = await _check_name(db_session, changes["name"], other_than=unit.id)
        if name != unit.name:
            changed["name"] = unit.name = name
    if "parent_id" in changes and changes["parent_id"] != unit.parent_id:
        parent_id = changes["parent_id"]
        if parent_id is not None:
            await get(db_session=db_session, unit_id=parent_id)
            if parent_id in await subtree(db_session=db_session, unit_id=unit.id):
                raise Invalid(
                    f"unit {parent_id} is unit {unit.id} or one of its sub-units: it cannot be its parent"
                )
        changed["parent_id"] = unit.parent_id = parent_id
    await db_session.flush()
    return unit, changed


async def delete(*, db_session: AsyncSession, unit_id: int) -> Unit:
    unit = await get(db_session=db_session, unit_id=unit_id)
    for what, query in (
        ("sub-units", select(func.count()).select_from(Unit).where(Unit.parent_id == unit.id)),
        ("people", select(func.count()).select_from(Person).where(Person.unit_id == unit.id)),
        (
            "directives sent to it",
            select(func.count()).select_from(Directive).where(Directive.unit_id == unit.id),
        ),
    ):
        count = await db_session.scalar(query) or 0
        if count:
            raise Conflict(f"unit {unit.id} has {count} {what}: it cannot be removed")
    await db_session.delete(unit)
    await db_session.flush()
    return unit


async def list_units(
    *,
    db_session: AsyncSession,
    parent_id: int | None = None,
    top_level: bool = False,
    text: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Unit], int]:
    """One page of units by name, and how many match in all."""
    query = select(Unit)
    if parent_id is not None:
        query = query.where(Unit.parent_id == parent_id)
    if top_level:
        query = query.where(Unit.parent_id.is_(None))
    if text:
        query = query.where(func.lower(Unit.name).like(f"%{text.lower()}%"))
    total = await db_session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.order_by(Unit.name, Unit.id).limit(limit).offset(offset)
    return list((await db_session.scalars(page)).all()), total


async def member_counts(*, db_session: AsyncSession, unit_ids: list[int]) -> dict[int, int]:
    """Active people in each of these units (not counting sub-units)."""
    if not unit_ids:
        return {}
    rows = await db_session.execute(
        select(Person.unit_id, func.count())
        .where(Person.unit_id.in_(unit_ids), Person.active)
        .group_by(Person.unit_id)
    )
    return {unit_id: count for unit_id, count in rows if unit_id is not None}


async def members(*, db_session: AsyncSession, unit_id: int) -> list[Person]:
    """The active people in the unit and its sub-units now, by id."""
    units = await subtree(db_session=db_session, unit_id=unit_id)
    query = select(Person).where(Person.unit_id.in_(units), Person.active).order_by(Person.id)
    return list((await db_session.scalars(query)).all())
