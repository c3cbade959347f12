"""Access tokens: HS256 JWTs of at most 15 minutes naming a person and a role."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from dispatch_server.errors import Unauthorized
from dispatch_server.people.models import Role
from zhihui.settings import Settings

__all__ = ["AccessClaims", "TokenService", "load_or_create_secret"]

ALGORITHM = "HS256"
AUDIENCE = "zhihui-dispatch"


def load_or_create_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(secret)
    return secret


@dataclass(frozen=True, slots=True)
class AccessClaims:
    person_id: int
    role: Role
    expires_at: datetime


class TokenService:
    def __init__(self, secret: str, minutes: int) -> None:
        self._secret = secret
        self.minutes = minutes

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenService:
        secret = (
            settings.auth.jwt_secret.get_secret_value()
            if settings.auth.jwt_secret
            else load_or_create_secret(settings.data_dir / "jwt_secret")
        )
        return cls(secret, settings.auth.access_token_minutes)

    def issue(self, person_id: int, role: Role, now: datetime | None = None) -> tuple[str, datetime]:
        issued_at = now or datetime.now(UTC)
        expires_at = issued_at + timedelta(minutes=self.minutes)
        claims = {
            "sub": str(person_id),
            "role": role.value,
            "iat": issued_at,
            "exp": expires_at,
            "aud": AUDIENCE,
            "typ": "access",
            "jti": secrets.token_hex(8),  # each token its own, even two issued in the same second
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return token, expires_at

    def verify(self, token: str | None) -> AccessClaims:
        if not token:
            raise Unauthorized("sign in first: an access token is required")
        try:
            payload = jwt.decode(token, self._secret, algorithms=[ALGORITHM], audience=AUDIENCE)
            return AccessClaims(
                person_id=int(payload["sub"]),
                role=Role(payload["role"]),
                expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the access token has expired: sign in again") from None
        except (jwt.InvalidTokenError, KeyError, ValueError):
            raise Unauthorized("the access token is not valid: sign in again") from None
