"""The one websocket per client (``/ws``): authenticate, then push and take acknowledgements."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.websockets import WebSocketState

from dispatch_server.context import Context
from dispatch_server.directives import service as directives
from dispatch_server.directives.schemas import DirectiveOut
from dispatch_server.errors import DomainError
from dispatch_server.people.models import WATCH_ROLES, Person
from dispatch_server.people.schemas import UserOut
from dispatch_server.realtime.hub import Connection
from dispatch_server.realtime.messages import (
    MAX_MESSAGE_BYTES,
    AckMessage,
    AuthMessage,
    DirectiveMessage,
    ErrorMessage,
    ReadyMessage,
    ServerMessage,
    client_message,
)

router = APIRouter()
logger = logging.getLogger(__name__)

AUTH_TIMEOUT = 10.0
POLICY_VIOLATION = 1008
TOO_BIG = 1009


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
    person = await _authenticate(websocket, context)
    if person is None:
        return
    connection = Connection(person.id, person.role in WATCH_ROLES)
    context.hub.attach(connection)
    writer = asyncio.create_task(_write(websocket, context, connection))
    try:
        await _send(websocket, ReadyMessage(user=UserOut.model_validate(person)))
        async with context.db.sessions() as db_session:
            for directive in await directives.pending_for(db_session=db_session, person_id=person.id):
                connection.push(DirectiveMessage(directive=DirectiveOut.model_validate(directive)))
        await _read(websocket, context, person)
    except WebSocketDisconnect:
        pass
    finally:
        context.hub.detach(connection)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


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


async def _authenticate(websocket: WebSocket, context: Context) -> Person | None:
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
        return person
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
            await _send(websocket, ErrorMessage(message=f"malformed message: {first.get('msg')}"))
            continue
        if isinstance(message, AckMessage):
            await _acknowledge(websocket, context, person, message.directive_id)
        else:
            await _send(websocket, ErrorMessage(message="already authenticated"))


async def _acknowledge(websocket: WebSocket, context: Context, person: Person, directive_id: int) -> None:
    try:
        async with context.db.sessions() as db_session:
            directive, changed = await directives.acknowledge(
                db_session=db_session, directive_id=directive_id, person_id=person.id
            )
    except DomainError as exc:
        await _send(websocket, ErrorMessage(message=exc.message))
        return
    if changed:
        await directives.announce_update(bus=context.bus, directive=directive)


async def _write(websocket: WebSocket, context: Context, connection: Connection) -> None:
    """Send the outbox in order; a directive sent to its target is marked delivered."""
    sent_directives: set[int] = set()
    try:
        while True:
            message = await connection.outbox.get()
            if message is None:
                await websocket.close(code=TOO_BIG, reason="too far behind: reconnect")
                return
            if isinstance(message, DirectiveMessage):
                if message.directive.id in sent_directives:
                    continue
                sent_directives.add(message.directive.id)
            await _send(websocket, message)
            if isinstance(message, DirectiveMessage):
                await _note_delivered(context, message.directive.id, connection.person_id)
    except (WebSocketDisconnect, RuntimeError):
        return  # the reader notices the disconnect and cleans up
    except Exception:
        logger.exception("websocket writer for person %s failed", connection.person_id)


async def _note_delivered(context: Context, directive_id: int, person_id: int) -> None:
    async with context.db.sessions() as db_session:
        if await directives.mark_delivered(
            db_session=db_session, directive_id=directive_id, person_id=person_id
        ):
            directive = await directives.get(db_session=db_session, directive_id=directive_id)
            await directives.announce_update(bus=context.bus, directive=directive)
