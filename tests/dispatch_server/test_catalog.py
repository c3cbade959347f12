"""The catalog rebuilt from the manifests (R2): what no relay event brought (segments sealed after a
crash, events lost while the server was down) is catalogued on start, once, gaps included."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from sqlalchemy import select

from dispatch_server.archive import service as catalog
from dispatch_server.archive.models import RecordingGap, RecordingSegment
from dispatch_server.db import Database
from dispatch_server.people.models import Person, Role
from dispatch_server.streams.models import Stream
from media_relay.forwarding.frames import MediaKind
from media_relay.recording.recorder import StreamRecorder
from tests.media_relay.recordings import interleaved, opus_frames, vp8_frames


async def test_reconcile_catalogues_each_manifest_entry_once(workdir: Path) -> None:
    root = workdir / "recordings"
    recorder = StreamRecorder(
        root=root, stream_id="s1", tracks={MediaKind.VIDEO: "vp8", MediaKind.AUDIO: "opus"}, segment_seconds=0
    )
    base = time.monotonic()
    frames = interleaved(vp8_frames(30), opus_frames(2))
    for n, frame in enumerate(frames):
        if n == len(frames) // 2:
            recorder.pause()
            recorder.resume("publisher reconnected")
        recorder.write(dataclasses.replace(frame, received_at=base + frame.timestamp / frame.clock_rate))
    recorder.close()
    unknown = StreamRecorder(
        root=root, stream_id="foreign", tracks={MediaKind.AUDIO: "opus"}, segment_seconds=0
    )
    for frame in opus_frames(0.2):
        unknown.write(frame)
    unknown.close()

    database = Database(f"sqlite+aiosqlite:///{workdir / 'catalog.db'}")
    await database.start()
    try:
        async with database.sessions() as db_session:
            officer = Person(username="o1", display_name="O1", role=Role.FIELD_OFFICER, password_hash="x")
            db_session.add(officer)
            await db_session.flush()
            db_session.add(Stream(id="s1", officer_id=officer.id, device="bodycam"))
            await db_session.commit()
            added = await catalog.reconcile(db_session=db_session, root=root)
            again = await catalog.reconcile(db_session=db_session, root=root)
            segments = (
                await db_session.scalars(select(RecordingSegment).order_by(RecordingSegment.sequence))
            ).all()
            gaps = (await db_session.scalars(select(RecordingGap))).all()
        entries = recorder.manifest.entries()
        listed = [e for e in entries if e["type"] == "segment"]
        assert added == len(entries) and again == 0
        assert [(s.sequence, s.sha256, s.file) for s in segments] == [
            (e["sequence"], e["sha256"], f"{recorder.directory.relative_to(root).as_posix()}/{e['file']}")
            for e in listed
        ]
        assert [g.reason for g in gaps] == ["publisher reconnected"]
        assert {s.stream_id for s in segments} == {"s1"}  # a stream this server never granted is left out
    finally:
        await database.stop()
