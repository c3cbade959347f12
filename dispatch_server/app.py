"""The composition root: settings in, the whole one-machine ASGI app out.

It wires the database, the bus, the token and grant keys, the domain routes, the websocket, the
pages, and the media relay mounted at ``/relay`` with its events flowing into the streams domain.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from dispatch_server import errors
from dispatch_server.alerts import overdue as ack_overdue
from dispatch_server.alerts import views as alert_views
from dispatch_server.alerts.rules import RuleRunner
from dispatch_server.archive import redaction_views as archive_redaction_views
from dispatch_server.archive import retention_views as archive_retention_views
from dispatch_server.archive import service as archive_catalog
from dispatch_server.archive import views as archive_views
from dispatch_server.archive.exports import ExportRunner
from dispatch_server.archive.redaction import RedactionRunner
from dispatch_server.archive.tickets import ArchiveTickets
from dispatch_server.audit import views as audit_views
from dispatch_server.auth import views as auth_views
from dispatch_server.auth.tokens import TokenService
from dispatch_server.context import Context
from dispatch_server.db import Database
from dispatch_server.devices import views as device_views
from dispatch_server.directives import views as directive_views
from dispatch_server.duty import views as duty_views
from dispatch_server.duty.rules import EmptySeatCheck
from dispatch_server.escalation import views as escalation_views
from dispatch_server.escalation.scheduler import EscalationScheduler
from dispatch_server.field_ops import rules as field_op_rules
from dispatch_server.field_ops import views as field_op_views
from dispatch_server.health import views as health_views
from dispatch_server.incidents import service as incidents
from dispatch_server.incidents import views as incident_views
from dispatch_server.people import views as people_views
from dispatch_server.positions import service as position_rules
from dispatch_server.positions import views as position_views
from dispatch_server.positions.recorder import PositionRecorder
from dispatch_server.realtime import views as realtime_views
from dispatch_server.realtime.bus import Bus, InProcessBus, RedisBus
from dispatch_server.realtime.hub import Hub
from dispatch_server.relays import views as relay_views
from dispatch_server.scheduling.clock import Clock, SystemClock
from dispatch_server.streams import service as streams
from dispatch_server.streams import views as stream_views
from dispatch_server.units import views as unit_views
from dispatch_server.web import views as web_views
from media_relay.app import create_relay_app
from media_relay.events import (
    AnyRelayEvent,
    RecordingGap,
    SegmentSealed,
    StorageAlert,
    StreamDown,
    StreamHealth,
    StreamUp,
)
from zhihui.grants import GrantSigner, GrantVerifier, load_or_create_private_key
from zhihui.settings import Settings

__all__ = ["create_app", "create_context"]

logger = logging.getLogger(__name__)


def _grant_key_file(settings: Settings) -> Path:
    return settings.auth.grant_private_key_file or settings.data_dir / "grant_ed25519.pem"


def create_context(settings: Settings) -> Context:
    key_file = _grant_key_file(settings)
    bus: Bus = RedisBus(settings.redis_url, settings.redis_prefix) if settings.redis_url else InProcessBus()
    return Context(
        settings=settings,
        db=Database(settings.effective_database_url),
        tokens=TokenService.from_settings(settings),
        grants=GrantSigner(load_or_create_private_key(key_file)),
        bus=bus,
        hub=Hub(bus),
    )


def create_app(settings: Settings, context: Context | None = None, clock: Clock | None = None) -> FastAPI:
    """The app; ``clock`` is the time every rule runs on (the system's unless a test gives one)."""
    context = context or create_context(settings)
    clock = clock or SystemClock()
    scheduler = EscalationScheduler(
        db=context.db,
        bus=context.bus,
        clock=clock,
        leader_after=timedelta(seconds=settings.escalation.leader_after_seconds),
        poll=timedelta(seconds=settings.escalation.poll_seconds),
        leader_post=settings.duty.leader_post,
    )
    rules = RuleRunner(
        db=context.db, bus=context.bus, clock=clock, every=timedelta(seconds=settings.alerts.check_seconds)
    )
    no_stream = field_op_rules.NoStreamCheck(settings.alerts.no_stream_seconds)
    rules.add(no_stream.name, no_stream)
    rules.add("field_op_streams", field_op_rules.stream_check)
    rules.add("ack_overdue", ack_overdue.check)
    rules.add(EmptySeatCheck.name, EmptySeatCheck(settings.duty))

    archive = archive_views.Archive(
        root=settings.recording.root,
        tickets=ArchiveTickets(load_or_create_private_key(_grant_key_file(settings))),
        exports=ExportRunner(
            database=context.db, root=settings.recording.root, folder=settings.data_dir / "exports"
        ),
    )
    redactions = RedactionRunner(database=context.db, folder=settings.data_dir / "redactions")
    positions = PositionRecorder(
        db=context.db, bus=context.bus, flush_seconds=settings.positions.flush_seconds
    )

    async def on_relay_event(event: AnyRelayEvent) -> None:
        async with context.db.sessions() as db_session:
            if isinstance(event, SegmentSealed | RecordingGap):
                await archive_catalog.catalog_event(db_session=db_session, event=event)
                return
            if isinstance(event, StorageAlert):
                await streams.record_storage_alert(db_session=db_session, bus=context.bus, event=event)
                return
            await streams.record_relay_event(
                db_session=db_session, bus=context.bus, event=event, relay_url=settings.relay_url
            )
        if not isinstance(event, StreamHealth):  # first, so that a timeline has it before its alerts
            await _note_stream_on_incidents(context, event, clock)
        rules.kick()  # a stream went up, down or bad: the field operation rules look at once

    # One machine: the relay runs in here. Relays run apart (`zhihui relay`) report to /api/relay/events.
    relay = (
        create_relay_app(settings, GrantVerifier(context.grants.public_key), events=on_relay_event)
        if settings.relay_node.in_process
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await context.db.start()
        await context.bus.start()
        if relay is not None and settings.redis_url is None:
            # One process, one relay: streams still marked live died with the previous run.
            async with context.db.sessions() as db_session:
                ended = await streams.end_orphaned_streams(
                    db_session=db_session, bus=context.bus, reason="relay restart"
                )
            if ended:
                logger.warning("ended %d stream(s) the previous run left live", ended)
        # The catalog gains what no relay event brought: segments sealed after a crash, events lost
        # while this server was down (with several nodes, each catalogues its own relay's archive).
        async with context.db.sessions() as db_session:
            added = await archive_catalog.reconcile(db_session=db_session, root=settings.recording.root)
        if added:
            logger.warning("catalogued %d recording entries found only in the manifests", added)
        archive.exports.folder.mkdir(parents=True, exist_ok=True)
        redactions.folder.mkdir(parents=True, exist_ok=True)
        scheduler.start()
        rules.start()
        if relay is not None:
            relay.state.registry.start()
        positions.start()
        try:
            yield
        finally:
            await positions.stop()  # stores the positions still waiting: a clean stop loses none
            await rules.stop()
            await scheduler.stop()
            # Mounted apps get no lifespan of their own: stop the relay from here.
            if relay is not None:
                await relay.state.registry.stop()
            await archive.exports.stop()
            await redactions.stop()
            await context.bus.stop()
            await context.db.stop()

    app = FastAPI(
        title="Zhihui dispatch server",
        summary="Field dispatch and bodycam video command for a court's enforcement command center",
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.context = context
    app.state.archive = archive
    app.state.redactions = redactions
    app.state.positions = positions
    app.state.position_limits = position_rules.Limits(
        max_future=timedelta(seconds=settings.positions.max_future_seconds),
        max_age=timedelta(hours=settings.positions.max_age_hours),
    )
    app.state.clock = clock
    app.state.scheduler = scheduler
    app.state.rules = rules
    app.state.relay_events = on_relay_event  # the relay's reports come in here (tests feed it too)
    errors.install(app)
    for router in (
        health_views.router,
        auth_views.router,
        people_views.router,
        unit_views.router,
        device_views.router,
        directive_views.router,
        duty_views.router,
        incident_views.router,
        field_op_views.router,
        escalation_views.router,
        escalation_views.incident_router,
        stream_views.router,
        realtime_views.router,
        web_views.router,
        audit_views.router,
        archive_views.router,
        archive_retention_views.router,
        archive_redaction_views.router,
        alert_views.router,
        position_views.router,
        relay_views.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=web_views.STATIC_DIR), name="static")
    if relay is not None:
        app.mount("/relay", relay, name="relay")
    return app


async def _note_stream_on_incidents(context: Context, event: StreamUp | StreamDown, clock: Clock) -> None:
    """A stream of an officer on open incidents went up or down: on their timelines (R5)."""
    from dispatch_server.streams.models import Stream

    try:
        async with context.db.sessions() as db_session:
            stream = await db_session.get(Stream, event.stream_id)
            if stream is not None:
                await incidents.record_stream_change(
                    db_session=db_session,
                    stream_id=stream.id,
                    officer=stream.officer,
                    up=isinstance(event, StreamUp),
                    at=clock.now(),
                )
    except Exception:
        logger.exception("could not note stream %s on its incidents' timelines", event.stream_id)
