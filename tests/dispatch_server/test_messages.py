"""Every message the event log keeps reads back from its own JSON (DESIGN.md 4: SQL, then push)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatch_server.people.models import Role
from dispatch_server.people.schemas import UserOut
from dispatch_server.realtime.messages import (
    EventMessage,
    StreamDownMessage,
    StreamHealthMessage,
    StreamUpMessage,
    event_message,
)
from dispatch_server.streams.schemas import StreamOut

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
OFFICER = UserOut(id=3, username="officer1", display_name="Officer Li", role=Role.FIELD_OFFICER)
STREAM = StreamOut.model_validate(
    {
        "id": "officer1-bodycam-1",
        "officer": OFFICER,
        "device": "bodycam",
        "started_at": NOW,
        "ended_at": None,
        "video_codec": "vp8",
        "audio_codec": "opus",
        "health": ["frozen"],
    }
)


@pytest.mark.parametrize(
    "message",
    [
        StreamUpMessage(stream=STREAM),
        StreamDownMessage(stream_id="officer1-bodycam-1"),
        StreamHealthMessage(stream_id="officer1-bodycam-1", flags=["black"], at=NOW),
    ],
)
def test_stream_messages_survive_the_event_log(message: EventMessage) -> None:
    assert event_message.validate_json(message.model_dump_json()) == message
