"""The field client's side of the dispatch server: sign in, get a publish grant, directives.

The password is used once, to sign in; after that the access token (15 minutes) is renewed with
the refresh token before it expires, on a 401, and when the websocket refuses it. Each refresh
token is good once: the client keeps only the newest. When the sign-in ends (12 hours by default,
a logout, or the account disabled) requests raise :class:`SignedOut`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import websockets

from field_client.position import Fix
from field_client.whip import _detail

__all__ = ["DispatchClient", "DispatchError", "PublishGrant", "SignedOut", "Unreachable"]

logger = logging.getLogger(__name__)

RENEW_BEFORE_SECONDS = 60.0
"""Refresh the access token when it has less than this left."""
MAX_UNSENT_POSITIONS = 10_000
"""Fixes kept while offline (a fix every 5 s: almost 14 hours)."""
BATCH_POSITIONS = 1000
"""Fixes per ``POST /api/positions/batch`` (the server takes at most 1,000)."""


class DispatchError(RuntimeError):
    """The dispatch server refused a request; the message is the server's own."""


class SignedOut(DispatchError):
    """The sign-in has ended (expired, logged out, or disabled): sign in again with the password."""


class Unreachable(DispatchError):
    """The dispatch server could not be reached (no network, or the server is down)."""


@dataclass(frozen=True)
class PublishGrant:
    grant: str
    stream_id: str
    whip_url: str


class DispatchClient:
    def __init__(self, base_url: str, *, http: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.AsyncClient(base_url=self.base_url, timeout=15)
        self.token: str | None = None
        self.refresh_token: str | None = None
        self.token_expires_at = 0.0
        """When the access token expires, by ``time.monotonic()``."""
        self.user: dict[str, Any] | None = None
        self.last_event_id: int | None = None
        """The newest event seen on the websocket: a reconnect resumes after it, missing nothing."""
        self._renewing: asyncio.Lock = asyncio.Lock()
        self.unsent_positions: list[dict[str, Any]] = []
        """Fixes taken while the server could not be reached, oldest first, sent when it can be
        (at most ``MAX_UNSENT_POSITIONS``: the oldest are dropped first)."""
        self._ws: Any = None

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        await self._http.aclose()

    async def _send(self, method: str, path: str, *, authorized: bool, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if authorized and self.token else {}
        try:
            return await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {self.base_url}: {exc}") from None

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """An authorized request: the access token renewed first when it is about to expire, and
        once more if the server refuses it."""
        if (
            self.refresh_token is not None
            and time.monotonic() >= self.token_expires_at - RENEW_BEFORE_SECONDS
        ):
            await self.refresh()
        response = await self._send(method, path, authorized=True, **kwargs)
        if response.status_code == 401 and self.refresh_token is not None:
            await self.refresh()
            response = await self._send(method, path, authorized=True, **kwargs)
        return _answer(method, path, response)

    def _signed_in(self, body: dict[str, Any]) -> None:
        self.token = body["access_token"]
        self.refresh_token = body["refresh_token"]
        self.token_expires_at = time.monotonic() + float(body["expires_in"])
        self.user = body["user"]

    async def login(self, username: str, password: str) -> dict[str, Any]:
        """Sign in; the password is not kept."""
        response = await self._send(
            "POST", "/api/auth/login", authorized=False, json={"username": username, "password": password}
        )
        self._signed_in(_answer("POST", "/api/auth/login", response, signed_in=False))
        assert self.user is not None
        return self.user

    async def refresh(self) -> None:
        """Exchange the refresh token for a new access token and refresh token. Several callers at
        once share one exchange (a token is good once: two exchanges would end the sign-in)."""
        spent = self.refresh_token
        async with self._renewing:
            if self.refresh_token != spent:
                return  # renewed by someone else while we waited
            if self.refresh_token is None:
                raise SignedOut("not signed in")
            response = await self._send(
                "POST", "/api/auth/refresh", authorized=False, json={"refresh_token": self.refresh_token}
            )
            if response.status_code == 401:
                self.token = self.refresh_token = None
                raise SignedOut(f"POST /api/auth/refresh: 401 {_detail(response)}")
            self._signed_in(_answer("POST", "/api/auth/refresh", response))

    async def logout(self) -> None:
        """End the sign-in on the server (its refresh token stops working) and forget it."""
        if self.refresh_token is not None:
            await self._send(
                "POST", "/api/auth/logout", authorized=False, json={"refresh_token": self.refresh_token}
            )
        self.token = self.refresh_token = None

    async def publish_grant(self, device: str) -> PublishGrant:
        body = await self._request("POST", "/api/grants/publish", json={"device": device})
        whip_url = str(httpx.URL(self.base_url + "/").join(body["whip_url"]))
        return PublishGrant(grant=body["grant"], stream_id=body["stream_id"], whip_url=whip_url)

    async def done(self, directive_id: int) -> dict[str, Any]:
        """Report a directive done (after acknowledging it); idempotent."""
        return await self._request("POST", f"/api/directives/{directive_id}/done")  # type: ignore[no-any-return]

    async def acknowledge(self, directive_id: int) -> dict[str, Any]:
        if self._ws is not None:
            await self._ws.send(json.dumps({"type": "ack", "directive_id": directive_id}))
            return {"id": directive_id}
        return await self._request("POST", f"/api/directives/{directive_id}/ack")  # type: ignore[no-any-return]

    async def sos(self, note: str = "", position: Fix | None = None) -> dict[str, Any]:
        """Call for help (R9): a critical alert for the command room, with where the officer is if
        known. An SOS of this officer that is open already is answered with that one."""
        body: dict[str, Any] = {"note": note[:500]}
        if position is not None:  # an SOS takes where, not when, heading or speed
            report = position.report()
            body["position"] = {key: report[key] for key in ("latitude", "longitude", "accuracy_m")}
        return await self._request("POST", "/api/alerts/sos", json=body)  # type: ignore[no-any-return]

    async def send_position(self, fix: Fix) -> None:
        """Report where the officer is (R9): over the websocket when it is open (refusals come back
        on it as ``error`` messages), else by REST. Stored by the server within a second. Without
        a network the fix is kept, with its own time, and sent with the next one that gets through
        (:class:`Unreachable` meanwhile); a fix the server refuses is dropped."""
        report = fix.report()
        if self._ws is not None and not self.unsent_positions:
            try:
                await self._ws.send(json.dumps({"type": "position", **report}))
                return
            except websockets.ConnectionClosed:
                pass  # dropped in between: REST instead
        self.unsent_positions.append(report)
        del self.unsent_positions[:-MAX_UNSENT_POSITIONS]
        while self.unsent_positions:
            kept = self.unsent_positions[:BATCH_POSITIONS]
            try:
                if len(kept) == 1:
                    await self._request("POST", "/api/positions", json=kept[0])
                else:
                    await self._request("POST", "/api/positions/batch", json={"positions": kept})
            except (Unreachable, SignedOut):
                raise
            except DispatchError as exc:
                logger.warning("dispatch refused %d position(s), dropped: %s", len(kept), exc)
            del self.unsent_positions[: len(kept)]

    async def listen(
        self, on_message: Callable[[dict[str, Any]], Awaitable[None]], *, reconnect: bool = True
    ) -> None:
        """Keep the websocket open, reconnecting with backoff; hand each message to ``on_message``.
        A refused access token is renewed before reconnecting; :class:`SignedOut` when the sign-in
        has ended."""
        ws_url = "ws" + self.base_url.removeprefix("http") + "/ws"
        delay = 0.5
        while True:
            refused = False
            try:
                if self.refresh_token is not None and time.monotonic() >= self.token_expires_at:
                    await self.refresh()
                async with websockets.connect(ws_url, max_size=64 * 1024) as ws:
                    auth: dict[str, Any] = {"type": "auth", "token": self.token}
                    if self.last_event_id is not None:
                        auth["last_event_id"] = self.last_event_id
                    await ws.send(json.dumps(auth))
                    self._ws = ws
                    delay = 0.5
                    async for raw in ws:
                        message = json.loads(raw)
                        self._note_position(message)
                        await on_message(message)
            except websockets.ConnectionClosed as exc:
                refused = exc.rcvd is not None and exc.rcvd.code == 1008
                logger.warning("directive channel closed (%s); reconnecting", exc)
            except (OSError, websockets.WebSocketException) as exc:
                logger.warning("directive channel lost (%s); reconnecting", exc)
            except SignedOut:
                raise
            except DispatchError as exc:  # the refresh could not reach the server
                logger.warning("cannot renew the sign-in yet (%s); retrying", exc)
            finally:
                self._ws = None
            if not reconnect:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)
            if refused and self.refresh_token is not None:
                # Access tokens last 15 minutes: renew it and carry on where we were.
                try:
                    await self.refresh()
                except SignedOut:
                    raise
                except DispatchError as exc:
                    logger.warning("cannot renew the sign-in yet: %s", exc)

    def _note_position(self, message: dict[str, Any]) -> None:
        event_id = message.get("event_id")
        if message.get("type") == "ready" and self.last_event_id is None:
            event_id = message.get("last_event_id")
        if isinstance(event_id, int) and (self.last_event_id is None or event_id > self.last_event_id):
            self.last_event_id = event_id


def _answer(method: str, path: str, response: httpx.Response, *, signed_in: bool = True) -> Any:
    """The JSON answer; :class:`SignedOut` for a 401 to a signed-in request, else DispatchError."""
    if response.status_code >= 400:
        error = SignedOut if response.status_code == 401 and signed_in else DispatchError
        raise error(f"{method} {path}: {response.status_code} {_detail(response)}")
    return response.json() if response.content else None
