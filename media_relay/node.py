"""A relay node: the relay run as a process of its own (``zhihui relay``, R18).

It verifies grants with the dispatch server's public key (from a file, or fetched from the dispatch
server at start) and reports its events to the dispatch server over HTTP (:mod:`media_relay.reporter`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI
from pydantic import BaseModel, Field

from media_relay.app import create_relay_app
from media_relay.events import RecordingGap, SegmentSealed
from media_relay.recording.catalog import manifest_events
from media_relay.recording.verify import find_streams
from media_relay.reporter import HttpReporter, LiveStreamsFile
from zhihui.grants import GrantVerifier
from zhihui.settings import Settings

__all__ = ["NodeConfigError", "ReportsOut", "create_relay_node_app", "fetch_public_key", "load_public_key"]

logger = logging.getLogger(__name__)


class ReportsOut(BaseModel):
    node: str
    dispatch_url: str
    pending: int = Field(description="Events waiting for the dispatch server.")
    delivered: int = Field(description="Events the dispatch server took since this node started.")
    dropped: int = Field(
        description="Events given up (the queue was full, or refused as malformed), each logged."
    )


class NodeConfigError(Exception):
    """The relay cannot run apart with these settings (what is missing is in the message)."""


def load_public_key(pem: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as error:
        raise NodeConfigError(f"{source} is not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise NodeConfigError(f"{source} is not an Ed25519 public key")
    return key


def fetch_public_key(dispatch_url: str, *, wait_seconds: float = 60.0) -> Ed25519PublicKey:
    """The dispatch server's grant public key, asked for until it answers (it may start later)."""
    url = dispatch_url.rstrip("/") + "/api/grants/public-key"
    deadline = time.monotonic() + wait_seconds
    pause = 0.2
    while True:
        try:
            response = httpx.get(url, timeout=5)
            response.raise_for_status()
            return load_public_key(response.json()["public_key_pem"].encode(), url)
        except (httpx.HTTPError, KeyError, ValueError) as error:
            if time.monotonic() + pause > deadline:
                raise NodeConfigError(f"could not get the grant public key from {url}: {error!r}") from None
            logger.warning("waiting for the dispatch server's grant public key at %s (%r)", url, error)
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def create_relay_node_app(settings: Settings, *, key_wait_seconds: float = 60.0) -> FastAPI:
    """The relay alone, reporting to ``relay_node.dispatch_url`` (raises :class:`NodeConfigError`)."""
    node = settings.relay_node
    missing = node.missing_to_run_apart()
    if missing is not None:
        raise NodeConfigError(missing)
    assert node.dispatch_url is not None and node.secret is not None
    if node.grant_public_key_file is not None:
        path = node.grant_public_key_file
        try:
            public_key = load_public_key(path.read_bytes(), str(path))
        except OSError as error:
            raise NodeConfigError(f"cannot read relay_node.grant_public_key_file: {error}") from None
    else:
        public_key = fetch_public_key(node.dispatch_url, wait_seconds=key_wait_seconds)
    reporter = HttpReporter(
        dispatch_url=node.dispatch_url,
        secret=node.secret.get_secret_value(),
        node=node.name,
        live_file=LiveStreamsFile(settings.data_dir / f"relay-node-{node.name}.json"),
        max_pending=node.max_pending_events,
        retry_max_seconds=node.retry_max_seconds,
    )
    app = create_relay_app(settings, GrantVerifier(public_key), events=reporter)
    app.state.reporter = reporter
    relay_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # First: 'relay_started' goes before anything this run reports, then what a crash left: the
        # manifests of its streams (segments sealed on start, and any whose report died with it).
        reporter.start(replay=lambda stream_ids: _manifests(settings.recording.root, stream_ids))
        try:
            async with relay_lifespan(app):
                yield
        finally:
            await reporter.stop()  # after the relay: its last streams' 'stream_down' go too

    app.router.lifespan_context = lifespan

    @app.get("/reports", response_model=ReportsOut, summary="This node's reports to the dispatch server")
    async def reports() -> ReportsOut:
        return ReportsOut(
            node=node.name,
            dispatch_url=str(node.dispatch_url),
            pending=reporter.pending,
            delivered=reporter.delivered,
            dropped=reporter.dropped,
        )

    return app


def _manifests(root: Path, stream_ids: list[str]) -> list[SegmentSealed | RecordingGap]:
    """Every entry of these streams' manifests (reported again: the catalog takes each only once)."""
    folders = find_streams(root)
    return [
        event
        for stream_id in stream_ids
        if stream_id in folders
        for event in manifest_events(folders[stream_id], root)
    ]
