from __future__ import annotations

from pydantic import BaseModel, Field


class GrantPublicKeyOut(BaseModel):
    algorithm: str = Field(description="The grants' JWT algorithm: EdDSA (Ed25519).")
    public_key_pem: str = Field(description="The key that verifies grants, as a PEM SubjectPublicKeyInfo.")
