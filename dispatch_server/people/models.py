from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch_server.db import Base, UtcDateTime, utcnow


class Role(enum.StrEnum):
    FIELD_OFFICER = "field_officer"
    DUTY_OFFICER = "duty_officer"
    COMMANDER = "commander"
    LEADER = "leader"
    UPPER_OBSERVER = "upper_observer"
    EXTERNAL = "external"
    ADMIN = "admin"


COMMAND_ROLES = frozenset({Role.COMMANDER, Role.LEADER, Role.ADMIN})
"""Who may issue directives."""
WATCH_ROLES = frozenset({Role.COMMANDER, Role.LEADER, Role.DUTY_OFFICER, Role.ADMIN})
"""Who may watch the wall and see the people and streams on it."""


class Person(Base):
    __tablename__ = "person"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=32))
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(default=True)
    """False: disabled. A disabled person cannot sign in, and its sign-ins stop renewing."""
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"), default=None, index=True)
    """The unit it belongs to (R15), if any."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
