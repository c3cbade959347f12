"""Devices (R15): register, issue, change and list them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.devices.models import Device, DeviceKind, DeviceStatus
from dispatch_server.errors import Conflict, NotFound
from dispatch_server.people import service as people
from dispatch_server.people.models import Person
from dispatch_server.units import service as units

__all__ = ["create", "delete", "get", "list_devices", "update"]

FIELDS = ("kind", "serial", "label", "person_id", "status")


async def get(*, db_session: AsyncSession, device_id: int) -> Device:
    device = await db_session.get(Device, device_id, populate_existing=True)
    if device is None:
        raise NotFound(f"there is no device {device_id}")
    return device


async def _check_serial(db_session: AsyncSession, serial: str, *, other_than: int | None = None) -> None:
    query = select(Device.id).where(func.lower(Device.serial) == serial.lower())
    if other_than is not None:
        query = query.where(Device.id != other_than)
    if await db_session.scalar(query) is not None:
        raise Conflict(f"there is already a device with serial {serial!r}")


async def create(
    *,
    db_session: AsyncSession,
    kind: DeviceKind,
    serial: str,
    label: str = "",
    person_id: int | None = None,
    status: DeviceStatus = DeviceStatus.IN_SERVICE,
    now: datetime,
) -> Device:
    await _check_serial(db_session, serial)
    if person_id is not None:
        await people.get(db_session=db_session, person_id=person_id)
    device = Device(
        kind=kind,
        serial=serial,
        label=label.strip(),
        person_id=person_id,
        status=status,
        created_at=now,
        updated_at=now,
    )
    db_session.add(device)
    await db_session.flush()
    return await get(db_session=db_session, device_id=device.id)


async def update(
    *, db_session: AsyncSession, device_id: int, changes: dict[str, Any], now: datetime
) -> tuple[Device, dict[str, Any]]:
    """Change the given fields; the device and what changed (``person_id: None`` takes it back)."""
    device = await get(db_session=db_session, device_id=device_id)
    changed: dict[str, Any] = {}
    for field in FIELDS:
        if field not in changes or (changes[field] is None and field != "person_id"):
            continue
        value = changes[field].strip() if field == "label" else changes[field]
        if value == getattr(device, field):
            continue
        if field == "serial":
            await _check_serial(db_session, value, other_than=device.id)
        if field == "person_id" and value is not None:
            await people.get(db_session=db_session, person_id=value)
        setattr(device, field, value)
        changed[field] = value
    if changed:
        device.updated_at = now
    await db_session.flush()
    return await get(db_session=db_session, device_id=device.id), changed


async def delete(*, db_session: AsyncSession, device_id: int) -> Device:
    device = await get(db_session=db_session, device_id=device_id)
    await db_session.delete(device)
    await db_session.flush()
    return device


async def list_devices(
    *,
    db_session: AsyncSession,
    kind: DeviceKind | None = None,
    status: DeviceStatus | None = None,
    person_id: int | None = None,
    unit_id: int | None = None,
    issued: bool | None = None,
    text: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Device], int]:
    """One page of devices by kind and serial, and how many match in all. ``unit_id``: devices
    issued to people of that unit or its sub-units."""
    query = select(Device)
    if kind is not None:
        query = query.where(Device.kind == kind)
    if status is not None:
        query = query.where(Device.status == status)
    if person_id is not None:
        query = query.where(Device.person_id == person_id)
    if unit_id is not None:
        await units.get(db_session=db_session, unit_id=unit_id)
        subtree = await units.subtree(db_session=db_session, unit_id=unit_id)
        query = query.where(Device.person_id.in_(select(Person.id).where(Person.unit_id.in_(subtree))))
    if issued is not None:
        query = query.where(Device.person_id.is_not(None) if issued else Device.person_id.is_(None))
    if text:
        pattern = f"%{text.lower()}%"
        query = query.where(
            or_(func.lower(Device.serial).like(pattern), func.lower(Device.label).like(pattern))
        )
    total = await db_session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.order_by(Device.kind, Device.serial).limit(limit).offset(offset)
    return list((await db_session.scalars(page)).unique().all()), total
