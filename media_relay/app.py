"""The relay's composition root: settings in, an ASGI app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from media_relay import aiortc_compat
from media_relay.events import EventSink
from media_relay.recording.recovery import recover_archive
from media_relay.sessions.registry import StreamRegistry
from media_relay.signaling.routes import build_router
from zhihui.grants import GrantVerifier
from zhihui.settings import Settings

__all__ = ["create_relay_app"]

logger = logging.getLogger(__name__)


def create_relay_app(settings: Settings, verifier: GrantVerifier, events: EventSink | None = None) -> FastAPI:
    aiortc_compat.check_versions()
    registry = StreamRegistry(relay=settings.relay, recording=settings.recording, events=events)
    settings.recording.root.mkdir(parents=True, exist_ok=True)
    # Before anything records: seal what a crash left open, so no new segment can take its place.
    recovered = recover_archive(settings.recording.root)
    if recovered:
        logger.warning("sealed %d segment(s) left open by a crash", len(recovered))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry.start()
        yield
        await registry.stop()

    app = FastAPI(title="Zhihui media relay", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.registry = registry
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["POST", "DELETE", "PATCH", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        expose_headers=["Location"],
    )
    app.include_router(build_router(registry, verifier, settings.relay))
    return app
