from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor_id: int | None
    actor_name: str
    role: str
    source: str
    action: str
    object: str
    outcome: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    @field_validator("detail", mode="before")
    @classmethod
    def _parse_detail(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_before_id: int | None = Field(
        description="Pass as before_id for the next (older) page; null on the last page."
    )


class ChainProblemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: int | None
    kind: str
    expected: str
    found: str


class ChainReportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    ok: bool
    rows: int
    head: str
    problems: list[ChainProblemOut]
