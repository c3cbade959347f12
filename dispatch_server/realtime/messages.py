"""Everything that crosses the websocket (and the bus): typed models in discriminated unions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from dispatch_server.alerts.schemas import AlertOut, Position
from dispatch_server.directives.schemas import DirectiveOut
from dispatch_server.duty.schemas import DutyChange
from dispatch_server.escalation.schemas import EscalationOut, IncidentEscalationOut
from dispatch_server.field_ops.schemas import FieldOperationOut
from dispatch_server.ids import BigCount, Id
from dispatch_server.people.schemas import UserOut
from dispatch_server.positions.schemas import PositionOut, PositionReport
from dispatch_server.streams.schemas import StreamOut

__all__ = [
    "AckMessage",
    "AlertMessage",
    "AlertUpdateMessage",
    "AuthMessage",
    "ClientMessage",
    "DirectiveMessage",
    "DirectiveUpdateMessage",
    "DutyMessage",
    "ErrorMessage",
    "EscalationMessage",
    "EventMessage",
    "FieldOperationMessage",
    "IncidentEscalationMessage",
    "IncidentEscalationUpdateMessage",
    "PositionMessage",
    "PositionsMessage",
    "ReadyMessage",
    "ServerMessage",
    "SosMessage",
    "StreamDownMessage",
    "StreamHealthMessage",
    "StreamUpMessage",
    "client_message",
    "event_message",
    "server_message",
]

MAX_MESSAGE_BYTES = 64 * 1024


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- client to server ------------------------------------------------------------------------------


class AuthMessage(_Message):
    type: Literal["auth"] = "auth"
    token: str = Field(max_length=4096)
    last_event_id: BigCount | None = Field(
        None,
        description="The last event id this client saw: it gets every event after it, then live ones. "
        "Unset: the directives it has not acknowledged yet, then live events.",
    )


class AckMessage(_Message):
    type: Literal["ack"] = "ack"
    directive_id: Id


class SosMessage(_Message):
    """An officer calls for help (R9): a critical alert for the command room at once."""

    type: Literal["sos"] = "sos"
    position: Position | None = None
    note: str = Field("", max_length=500)


class PositionMessage(PositionReport):
    """Where the officer is (R9): stored within a second, never answered (an ``error`` if refused)."""

    type: Literal["position"] = "position"


_ClientMessages = AuthMessage | AckMessage | SosMessage | PositionMessage
ClientMessage = Annotated[_ClientMessages, Field(discriminator="type")]
client_message: TypeAdapter[_ClientMessages] = TypeAdapter(ClientMessage)


# -- server to client ------------------------------------------------------------------------------


class ReadyMessage(_Message):
    type: Literal["ready"] = "ready"
    user: UserOut
    last_event_id: int = Field(
        description="Where this connection's events start: the client's own last_event_id when it was "
        "honoured, else the newest event id at connect time."
    )


class _Event(_Message):
    event_id: int | None = Field(
        None,
        description="This event's place in the event log (increasing, with gaps: ids are shared by all "
        "channels). None for a pending directive sent on connect that the log does not know.",
    )


class DirectiveMessage(_Event):
    """A directive for its target (``targets`` holds only the recipient's own entry)."""

    type: Literal["directive"] = "directive"
    directive: DirectiveOut


class DirectiveUpdateMessage(_Event):
    """A directive whose targets' states changed: all targets for the command room, only the
    recipient's own for a target."""

    type: Literal["directive_update"] = "directive_update"
    directive: DirectiveOut


class StreamUpMessage(_Event):
    type: Literal["stream_up"] = "stream_up"
    stream: StreamOut


class StreamDownMessage(_Event):
    type: Literal["stream_down"] = "stream_down"
    stream_id: str


class StreamHealthMessage(_Event):
    """A stream's picture went bad or recovered (R8): frozen, black, covered, no_video."""

    type: Literal["stream_health"] = "stream_health"
    stream_id: str
    flags: list[str]
    at: datetime


class EscalationMessage(_Event):
    """A target did not acknowledge a directive in time, and it was escalated (R4, R6): for the
    command room, with the directive as it stands."""

    type: Literal["escalation"] = "escalation"
    escalation: EscalationOut
    directive: DirectiveOut


class IncidentEscalationMessage(_Event):
    """An incident was reported up (R6), to the leader on duty or the upper court, with its
    escalation package: for the command room, and for each recipient outside it."""

    type: Literal["incident_escalation"] = "incident_escalation"
    escalation: IncidentEscalationOut


class IncidentEscalationUpdateMessage(_Event):
    """A recipient acknowledged receiving an incident's escalation."""

    type: Literal["incident_escalation_update"] = "incident_escalation_update"
    escalation: IncidentEscalationOut


class AlertMessage(_Event):
    """An alert was raised (R2, R4, R8, R9, R10): for the command room; an SOS also for the
    officer who sent it."""

    type: Literal["alert"] = "alert"
    alert: AlertOut

    @model_validator(mode="before")
    @classmethod
    def _logged_before_alert_rows(cls, data: Any) -> Any:
        """Storage alerts logged before alerts were rows had their fields at the top: read them
        as an alert with id 0 (``ok`` as one resolved at once)."""
        if not isinstance(data, dict) or "alert" in data or data.get("kind") != "storage":
            return data
        level = {"ok": "info", "write_failed": "critical"}.get(data.get("level", ""), "warning")
        at = data.get("at")
        alert = dict.fromkeys(AlertOut.model_fields) | {
            "id": 0,
            "kind": "storage",
            "level": level,
            "message": data.get("message", ""),
            "subject": "storage",
            "stream_id": data.get("stream_id") or None,
            "raised_at": at,
            "resolved_at": at if level == "info" else None,
            "acknowledged_note": "",
            "resolved_note": "",
        }
        return {"type": "alert", "event_id": data.get("event_id"), "alert": alert}


class AlertUpdateMessage(_Event):
    """An alert was acknowledged or resolved (by a person, or because it cleared itself)."""

    type: Literal["alert_update"] = "alert_update"
    alert: AlertOut


class DutyMessage(_Event):
    """The duty roster, a sign-in, a handover, an open item or the duty log changed (R10): for the
    command room, which refreshes what it shows."""

    type: Literal["duty"] = "duty"
    change: DutyChange
    post: str | None
    person: UserOut | None
    """Whom it is about (rostered, signed in, handing over, writing)."""
    ref_id: int
    """The shift, sign-in, handover, open item or log entry, as ``change`` says."""
    summary: str
    at: datetime


class FieldOperationMessage(_Event):
    """A field operation was registered, started or ended (R8): for the command room and its team."""

    type: Literal["field_operation"] = "field_operation"
    field_operation: FieldOperationOut


class ErrorMessage(_Message):
    type: Literal["error"] = "error"
    message: str


class PositionsMessage(_Message):
    """Officers' newest positions, for the command room: pushed once per stored batch (so at most
    about once a second per officer), not logged (a lost one is replaced by the next, and
    ``GET /api/positions/latest`` has them all)."""

    type: Literal["positions"] = "positions"
    positions: list[PositionOut]


_Events = (
    DirectiveMessage
    | DirectiveUpdateMessage
    | StreamUpMessage
    | StreamDownMessage
    | StreamHealthMessage
    | EscalationMessage
    | IncidentEscalationMessage
    | IncidentEscalationUpdateMessage
    | DutyMessage
    | AlertMessage
    | AlertUpdateMessage
    | FieldOperationMessage
)

EventMessage = Annotated[_Events, Field(discriminator="type")]
"""What the event log keeps: written to SQL, then pushed (DESIGN.md 4)."""
event_message: TypeAdapter[_Events] = TypeAdapter(EventMessage)

_ServerMessages = ReadyMessage | _Events | ErrorMessage | PositionsMessage
ServerMessage = Annotated[_ServerMessages, Field(discriminator="type")]
server_message: TypeAdapter[_ServerMessages] = TypeAdapter(ServerMessage)
