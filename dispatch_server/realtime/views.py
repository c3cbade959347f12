"""The one websocket per client (``/ws``): authenticate, then push and take acknowledgements.

After ``ready`` the writer sends, in order: the directives the person has not acknowledged yet
(only when the client gave no ``last_event_id``), then every event of its channels after its
cursor, read from the event log, then live ones as the bus wakes it. Reading from SQL after one
cursor is what makes it exact: no event twice, none skipped, whichever process wrote it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.websockets import WebSocketState

from dispatch_server.alerts import sos
from dispatch_server.alerts.models import Alert
from dispatch_server.alerts.schemas import AlertOut
from dispatch_server.audit import service as audit
from dispatch_server.context import Context
from dispatch_server.db import to_the_end
from dispatch_server.directives import service as directives
from dispatch_server.errors import DomainError
from dispatch_server.people.models import WATCH_ROLES, Person
from dispatch_server.people.schemas import UserOut
from dispatch_server.positions import service as positions
from dispatch_server.positions.recorder import PositionRecorder
from dispatch_server.realtime import eventlog
from dispatch_server.realtime.eventlog import LoggedEvent
from dispatch_server.realtime.hub import Connection
from dispatch_server.realtime.messages import (
    MAX_MESSAGE_BYTES,
    AckMessage,
    AlertMessage,
    AuthMessage,
    DirectiveMessage,
    ErrorMessage,
    EventMessage,
    PositionMessage,
    PositionsMessage,
    ReadyMessage,
    ServerMessage,
    SosMessage,
    client_message,
)
from dispatch_server.scheduling.clock import Clock

router = APIRouter()
logger = logging.getLogger(__name__)

AUTH_TIMEOUT = 10.0
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
PAGE = 200
"""Events read from the log at a time."""
POLL_SECONDS = 15.0
"""A writer re-reads the log this often even without a push, so a push lost on the bus is late,
never lost."""


def origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    """Browsers send an Origin: it must be this server's own, or one the settings allow."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser (the field client, tests, other servers)
    if origin in allowed:
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host")


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    context: Context = websocket.app.state.context
    if not origin_allowed(websocket, context.settings.http.allowed_origins):
        await websocket.close(code=POLICY_VIOLATION, reason="origin not allowed")
        return
    await websocket.accept()
    auth = await _authenticate(websocket, context)
    if auth is None:
        return
    person, last_event_id = auth
    connection = Connection(person.id, person.role in WATCH_ROLES)
    context.hub.attach(connection)  # before the first read of the log: nothing can slip between
    writer: asyncio.Task[None] | None = None
    try:
        pending = await _start_cursor(context, connection, last_event_id)
        await _send(
            websocket, ReadyMessage(user=UserOut.model_validate(person), last_event_id=connection.cursor)
        )
        writer = asyncio.create_task(_write(websocket, context, connection, pending))
        await _read(websocket, context, person)
    except WebSocketDisconnect:
        pass
    finally:
        context.hub.detach(connection)
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer


async def _start_cursor(
    context: Context, connection: Connection, last_event_id: int | None
) -> list[DirectiveMessage]:
    """Set the connection's cursor; return the pending directives to send before the log."""
    async with context.db.sessions() as db_session:
        newest = await eventlog.newest_id(db_session=db_session)
        if last_event_id is not None and last_event_id <= newest:
            connection.cursor = last_event_id
            return []
        if last_event_id is not None:
            logger.info(
                "person %s resumed after event %s, beyond the newest (%s): sending what is pending",
                connection.person_id,
                last_event_id,
                newest,
            )
        connection.cursor = newest
        pending = await directives.pending_messages(db_session=db_session, person_id=connection.person_id)
    # A directive logged after the cursor comes from the log, in its place.
    return [m for m in pending if m.event_id is None or m.event_id <= newest]


async def _send(websocket: WebSocket, message: ServerMessage) -> None:
    await websocket.send_text(message.model_dump_json())


async def _receive_text(websocket: WebSocket) -> str | None:
    """The next text message, or None after answering an oversized or binary one."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        await _send(websocket, ErrorMessage(message="send JSON text messages, not binary"))
        return None
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        await _send(websocket, ErrorMessage(message=f"messages are limited to {MAX_MESSAGE_BYTES} bytes"))
        return None
    return text


async def _authenticate(websocket: WebSocket, context: Context) -> tuple[Person, int | None] | None:
    """The signed-in person and the last event id the client saw, or None (the socket is closed)."""
    try:
        text = await asyncio.wait_for(_receive_text(websocket), AUTH_TIMEOUT)
        first = client_message.validate_json(text) if text is not None else None
        if not isinstance(first, AuthMessage):
            raise DomainError('the first message must be {"type": "auth", "token": "<access token>"}')
        claims = context.tokens.verify(first.token)
        async with context.db.sessions() as db_session:
            person = await db_session.get(Person, claims.person_id)
        if person is None or not person.active:
            raise DomainError("this account is no longer active")
        return person, first.last_event_id
    except (TimeoutError, WebSocketDisconnect):
        reason = "no authentication in time"
    except ValidationError:
        reason = 'the first message must be {"type": "auth", "token": "<access token>"}'
    except DomainError as exc:
        reason = exc.message
    if websocket.client_state is WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await _send(websocket, ErrorMessage(message=reason))
            await websocket.close(code=POLICY_VIOLATION, reason=reason[:120])
    return None


async def _read(websocket: WebSocket, context: Context, person: Person) -> None:
    while True:
        text = await _receive_text(websocket)
        if text is None:
            continue
        try:
            message = client_message.validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ())[1:])  # after the type's tag
            problem = f"{where}: {first.get('msg')}" if where else first.get("msg")
            await _send(websocket, ErrorMessage(message=f"malformed message: {problem}"))
            continue
        if isinstance(message, AckMessage):
            await _acknowledge(websocket, context, person, message.directive_id)
        elif isinstance(message, SosMessage):
            await _sos(websocket, context, person, message)
        elif isinstance(message, PositionMessage):
            await _position(websocket, person, message)
        else:
            await _send(websocket, ErrorMessage(message="already authenticated"))


def _now(websocket: WebSocket) -> datetime:
    """The app's one clock (tests move it by hand), as the REST views use it."""
    clock: Clock = websocket.app.state.clock
    return clock.now()


def _actor(websocket: WebSocket, person: Person) -> audit.Actor:
    client = websocket.client.host if websocket.client is not None else ""
    return audit.Actor(person_id=person.id, name=person.username, role=person.role.value, source=client)


async def _acknowledge(websocket: WebSocket, context: Context, person: Person, directive_id: int) -> None:
    async def acknowledge() -> list[LoggedEvent]:
        async with context.db.sessions() as db_session:
            _directive, events = await directives.acknowledge(
                db_session=db_session,
                directive_id=directive_id,
                person_id=person.id,
                actor=_actor(websocket, person),
                now=_now(websocket),
            )
        return events

    try:
        events = await to_the_end(acknowledge())
    except DomainError as exc:
        await _send(websocket, ErrorMessage(message=exc.message))
        return
    await eventlog.publish(bus=context.bus, events=events)


async def _sos(websocket: WebSocket, context: Context, person: Person, message: SosMessage) -> None:
    """An officer calls for help (R9): the alert reaches the command room and, as confirmation,
    this officer's own devices through the event log."""
    actor = _actor(websocket, person)

    async def raise_sos() -> tuple[Alert, list[LoggedEvent]]:
        async with context.db.sessions() as db_session:
            return await sos.raise_sos(
                db_session=db_session,
                officer=person,
                position=message.position,
                note=message.note,
                now=_now(websocket),
                actor=actor,
            )

    try:
        alert, events = await to_the_end(raise_sos())
    except DomainError as exc:
        await _send(websocket, ErrorMessage(message=exc.message))
        return
    if not events:  # open already: show it again to the one who pressed
        await _send(websocket, AlertMessage(alert=AlertOut.model_validate(alert)))
    await eventlog.publish(bus=context.bus, events=events)


async def _position(websocket: WebSocket, person: Person, message: PositionMessage) -> None:
    """The officer's own position (R9): accepted into the recorder, stored within a second."""
    recorder: PositionRecorder = websocket.app.state.positions
    try:
        fixes = positions.own_fixes(
            reporter=person,
            reports=[message],
            now=_now(websocket),
            limits=websocket.app.state.position_limits,
        )
        recorder.add(fixes)
    except DomainError as exc:
        await _send(websocket, ErrorMessage(message=exc.message))
    await recorder.room()  # the store is behind: read no more from this socket until it catches up


async def _write(
    websocket: WebSocket, context: Context, connection: Connection, pending: list[DirectiveMessage]
) -> None:
    """Send the pending directives, then the log after the cursor, page by page, then wait for the
    bus. A directive sent to its target is marked delivered. Positions pushed meanwhile go out
    after each read; a wake-up for positions alone does not read the log."""
    try:
        for directive in pending:
            await _send_event(websocket, context, connection, directive)
        read_log = True
        while True:
            connection.begin_read(log=read_log)
            page: list[EventMessage] = []
            if read_log:
                page = await to_the_end(_read_log(context, connection))
            for message in page:
                await _send_event(websocket, context, connection, message)
                assert message.event_id is not None
                connection.cursor = message.event_id
            if positions := connection.take_positions():
                await _send(websocket, PositionsMessage(positions=positions))
            read_log = len(page) == PAGE or await connection.wait(POLL_SECONDS)
    except (WebSocketDisconnect, RuntimeError):
        return  # the reader notices the disconnect and cleans up
    except Exception:
        logger.exception("websocket writer for person %s failed", connection.person_id)
        with contextlib.suppress(Exception):
            await websocket.close(code=INTERNAL_ERROR, reason="server error: reconnect")


async def _send_event(
    websocket: WebSocket, context: Context, connection: Connection, message: ServerMessage
) -> None:
    await _send(websocket, message)
    if isinstance(message, DirectiveMessage):
        directive_id, now = message.directive.id, _now(websocket)

        async def mark_delivered() -> list[LoggedEvent]:
            async with context.db.sessions() as db_session:
                return await directives.mark_delivered(
                    db_session=db_session, directive_id=directive_id, person_id=connection.person_id, now=now
                )

        # The writer is cancelled when its officer disconnects: the mark is made or not, never
        # left halfway (see to_the_end).
        events = await to_the_end(mark_delivered())
        await eventlog.publish(bus=context.bus, events=events)


async def _read_log(context: Context, connection: Connection) -> list[EventMessage]:
    async with context.db.sessions() as db_session:
        return await eventlog.read_after(
            db_session=db_session, after=connection.cursor, channels=connection.channels, limit=PAGE
        )
