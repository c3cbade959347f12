"""Everything that crosses the websocket (and the bus): typed models in discriminated unions."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from dispatch_server.directives.schemas import DirectiveOut
from dispatch_server.people.schemas import UserOut
from dispatch_server.streams.schemas import StreamOut

__all__ = [
    "AckMessage",
    "AuthMessage",
    "ClientMessage",
    "DirectiveMessage",
    "DirectiveUpdateMessage",
    "ErrorMessage",
    "ReadyMessage",
    "ServerMessage",
    "StreamDownMessage",
    "StreamUpMessage",
    "client_message",
    "server_message",
]

MAX_MESSAGE_BYTES = 64 * 1024


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- client to server ------------------------------------------------------------------------------


class AuthMessage(_Message):
    type: Literal["auth"] = "auth"
    token: str = Field(max_length=4096)


class AckMessage(_Message):
    type: Literal["ack"] = "ack"
    directive_id: int


ClientMessage = Annotated[AuthMessage | AckMessage, Field(discriminator="type")]
client_message: TypeAdapter[AuthMessage | AckMessage] = TypeAdapter(ClientMessage)


# -- server to client ------------------------------------------------------------------------------


class ReadyMessage(_Message):
    type: Literal["ready"] = "ready"
    user: UserOut


class DirectiveMessage(_Message):
    """A directive for its target."""

    type: Literal["directive"] = "directive"
    directive: DirectiveOut


class DirectiveUpdateMessage(_Message):
    """A directive whose targets' states changed, for the command room."""

    type: Literal["directive_update"] = "directive_update"
    directive: DirectiveOut


class StreamUpMessage(_Message):
    type: Literal["stream_up"] = "stream_up"
    stream: StreamOut


class StreamDownMessage(_Message):
    type: Literal["stream_down"] = "stream_down"
    stream_id: str


class ErrorMessage(_Message):
    type: Literal["error"] = "error"
    message: str


ServerMessage = Annotated[
    ReadyMessage
    | DirectiveMessage
    | DirectiveUpdateMessage
    | StreamUpMessage
    | StreamDownMessage
    | ErrorMessage,
    Field(discriminator="type"),
]
server_message: TypeAdapter[
    ReadyMessage
    | DirectiveMessage
    | DirectiveUpdateMessage
    | StreamUpMessage
    | StreamDownMessage
    | ErrorMessage
] = TypeAdapter(ServerMessage)
