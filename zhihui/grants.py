"""Grants: short-lived Ed25519-signed JWTs that name what a client may publish or watch.

The dispatch server signs them; the media relay only verifies them (DESIGN.md decision 6), so the
relay needs the public key and nothing else about people or incidents.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, TypeVar

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, Field, ValidationError

__all__ = [
    "GrantError",
    "GrantKind",
    "GrantSigner",
    "GrantVerifier",
    "PublishGrant",
    "ViewGrant",
    "load_or_create_private_key",
]

ALGORITHM = "EdDSA"
AUDIENCE = "zhihui-relay"


class GrantError(Exception):
    """A grant is missing, malformed, forged, expired or does not cover the request."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.forbidden = forbidden


class GrantKind(enum.StrEnum):
    PUBLISH = "publish"
    VIEW = "view"


class PublishGrant(BaseModel):
    kind: Literal[GrantKind.PUBLISH] = GrantKind.PUBLISH
    sub: str = Field(description="The officer's person id.")
    name: str = Field(description="The officer's display name, for the relay's own listings.")
    stream: str = Field(description="The one stream this grant may publish.")
    exp: int
    jti: str = Field(default_factory=lambda: uuid.uuid4().hex)


class ViewGrant(BaseModel):
    kind: Literal[GrantKind.VIEW] = GrantKind.VIEW
    sub: str
    streams: list[str] = Field(description="Streams this grant may watch.")
    exp: int
    jti: str = Field(default_factory=lambda: uuid.uuid4().hex)


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """Read the PEM key at ``path``, or make one there (mode 0600) if there is none."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return key


def _expiry(minutes: int, now: datetime | None) -> int:
    return int(((now or datetime.now(UTC)) + timedelta(minutes=minutes)).timestamp())


class GrantSigner:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()

    def publish(
        self, *, person_id: str, name: str, stream_id: str, minutes: int, now: datetime | None = None
    ) -> tuple[str, PublishGrant]:
        claims = PublishGrant(sub=person_id, name=name, stream=stream_id, exp=_expiry(minutes, now))
        return self._sign(claims), claims

    def view(
        self, *, person_id: str, stream_ids: list[str], minutes: int, now: datetime | None = None
    ) -> tuple[str, ViewGrant]:
        claims = ViewGrant(sub=person_id, streams=stream_ids, exp=_expiry(minutes, now))
        return self._sign(claims), claims

    def _sign(self, claims: BaseModel) -> str:
        payload = {**claims.model_dump(mode="json"), "aud": AUDIENCE}
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)


_G = TypeVar("_G", PublishGrant, ViewGrant)


class GrantVerifier:
    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._key = public_key

    def publish(self, token: str | None) -> PublishGrant:
        return self._verify(token, PublishGrant)

    def view(self, token: str | None, stream_id: str) -> ViewGrant:
        grant = self._verify(token, ViewGrant)
        if stream_id not in grant.streams:
            raise GrantError(f"this view grant does not cover stream {stream_id!r}", forbidden=True)
        return grant

    def _verify(self, token: str | None, model: type[_G]) -> _G:
        if not token:
            raise GrantError("a grant is required: send it as 'Authorization: Bearer <grant>'")
        try:
            payload = jwt.decode(token, self._key, algorithms=[ALGORITHM], audience=AUDIENCE)
        except jwt.ExpiredSignatureError:
            raise GrantError("the grant has expired: ask the dispatch server for a new one") from None
        except jwt.InvalidTokenError as exc:
            raise GrantError(f"the grant is not valid: {exc}") from None
        payload.pop("aud", None)
        if payload.get("kind") != model.model_fields["kind"].default.value:
            raise GrantError(
                f"this is a {payload.get('kind')!r} grant; a {model.__name__} is needed", forbidden=True
            )
        try:
            return model.model_validate(payload)
        except ValidationError:
            raise GrantError("the grant's claims are malformed") from None
