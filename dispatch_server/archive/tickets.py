"""Archive tickets: short-lived signed URLs' tokens for what a browser fetches without headers.

A ``<video src>`` or a download link cannot send ``Authorization``. The page asks for a ticket
(with its access token) naming one object, ``stream:<id>`` or ``export:<id>``, and puts it in the
URL. A ticket lasts minutes, covers only its object, and the person's role is checked again when it
is used. Signed with the deployment's Ed25519 grant key (shared by every dispatch process), under
an audience of its own so it is never mistaken for a relay grant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dispatch_server.errors import Unauthorized

__all__ = ["ArchiveTickets"]

ALGORITHM = "EdDSA"
AUDIENCE = "zhihui-archive"


class ArchiveTickets:
    def __init__(self, private_key: Ed25519PrivateKey, *, minutes: int = 5) -> None:
        self._key = private_key
        self._public = private_key.public_key()
        self.minutes = minutes

    def issue(self, *, person_id: int, object: str, now: datetime | None = None) -> tuple[str, datetime]:
        expires_at = (now or datetime.now(UTC)) + timedelta(minutes=self.minutes)
        token = jwt.encode(
            {"sub": str(person_id), "obj": object, "exp": expires_at, "aud": AUDIENCE},
            self._key,
            algorithm=ALGORITHM,
        )
        return token, expires_at

    def verify(self, token: str, *, object: str) -> int:
        """The person id the ticket was issued to, if it is valid and names ``object``."""
        try:
            payload = jwt.decode(token, self._public, algorithms=[ALGORITHM], audience=AUDIENCE)
            if payload.get("obj") != object:
                raise Unauthorized(f"this ticket is not for {object}")
            return int(payload["sub"])
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the ticket has expired: ask for a new one") from None
        except (jwt.InvalidTokenError, KeyError, ValueError):
            raise Unauthorized("the ticket is not valid") from None
