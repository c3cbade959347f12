"""The field client's side of the dispatch server: sign in, get a publish grant, directives."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import websockets

from field_client.whip import _detail

__all__ = ["DispatchClient", "DispatchError", "PublishGrant"]

logger = logging.getLogger(__name__)


class DispatchError(RuntimeError):
    """The dispatch server refused a request; the message is the server's own."""


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
        self.user: dict[str, Any] | None = None
        self.last_event_id: int | None = None
        """The newest event seen on the websocket: a reconnect resumes after it, missing nothing."""
        self._credentials: tuple[str, str] | None = None
        self._ws: Any = None

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise DispatchError(f"cannot reach {self.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise DispatchError(f"{method} {path}: {response.status_code} {_detail(response)}")
        return response.json()

    async def login(self, username: str, password: str) -> dict[str, Any]:
        body = await self._request(
            "POST", "/api/auth/login", json={"username": username, "password": password}
        )
        self._credentials = (username, password)
        self.token = body["access_token"]
        self.user = body["user"]
        return body["user"]

    async def publish_grant(self, device: str) -> PublishGrant:
        body = await self._request("POST", "/api/grants/publish", json={"device": device})
        whip_url = str(httpx.URL(self.base_url + "/").join(body["whip_url"]))
        return PublishGrant(grant=body["grant"], stream_id=body["stream_id"], whip_url=whip_url)

    async def acknowledge(self, directive_id: int) -> dict[str, Any]:
        if self._ws is not None:
            await self._ws.send(json.dumps({"type": "ack", "directive_id": directive_id}))
            return {"id": directive_id}
        return await self._request("POST", f"/api/directives/{directive_id}/ack")  # type: ignore[no-any-return]

    async def listen(
        self, on_message: Callable[[dict[str, Any]], Awaitable[None]], *, reconnect: bool = True
    ) -> None:
        """Keep the websocket open, reconnecting with backoff; hand each message to ``on_message``."""
        ws_url = "ws" + self.base_url.removeprefix("http") + "/ws"
        delay = 0.5
        while True:
            refused = False
            try:
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
            finally:
                self._ws = None
            if not reconnect:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)
            if refused and self._credentials is not None:
                # Access tokens last 15 minutes: sign in again and carry on where we were.
                try:
                    await self.login(*self._credentials)
                except DispatchError as exc:
                    logger.warning("cannot sign in again: %s", exc)

    def _note_position(self, message: dict[str, Any]) -> None:
        event_id = message.get("event_id")
        if message.get("type") == "ready" and self.last_event_id is None:
            event_id = message.get("last_event_id")
        if isinstance(event_id, int) and (self.last_event_id is None or event_id > self.last_event_id):
            self.last_event_id = event_id
