from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from dispatch_server.escalation.models import EscalationLevel
from dispatch_server.people.schemas import UserOut


class EscalationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    directive_id: int
    person: UserOut
    """The target that did not acknowledge in time."""
    level: EscalationLevel
    to_person: UserOut | None
    """Whom it went to (None: nobody of that role exists; the command room saw it)."""
    incident_id: int | None
    due_at: datetime
    fired_at: datetime
