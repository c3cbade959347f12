"""Units (R15, 执行队伍): the teams officers belong to, in a tree (a division and its squads)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch_server.db import Base, UtcDateTime


class Unit(Base):
    __tablename__ = "unit"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"), default=None, index=True)
    """The unit it is part of; None for a top-level unit."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
