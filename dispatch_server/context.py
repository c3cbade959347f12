"""What the routes need from the composition root, carried on ``app.state.context``."""

from __future__ import annotations

from dataclasses import dataclass

from dispatch_server.auth.tokens import TokenService
from dispatch_server.db import Database
from dispatch_server.realtime.bus import Bus
from dispatch_server.realtime.hub import Hub
from zhihui.grants import GrantSigner
from zhihui.settings import Settings

__all__ = ["Context"]


@dataclass
class Context:
    settings: Settings
    db: Database
    tokens: TokenService
    grants: GrantSigner
    bus: Bus
    hub: Hub
