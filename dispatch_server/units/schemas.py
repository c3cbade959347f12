from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from dispatch_server.ids import Id
from dispatch_server.paging import Page


class UnitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=128, description="Unique, e.g. 'Enforcement squad 1 执行一组'."
    )
    parent_id: Id | None = Field(None, description="The unit it is part of; unset for a top-level unit.")


class UnitPatch(BaseModel):
    """Fields to change; those left out stay as they are (``parent_id: null`` makes it top-level)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=128)
    parent_id: Id | None = None


class UnitRef(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str


class UnitOut(UnitRef):
    parent_id: int | None
    created_at: datetime
    members: int = Field(0, description="Active people in this unit itself (not its sub-units).")


class UnitPage(Page[UnitOut]):
    """Units by name."""
