from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from dispatch_server.ids import Id
from dispatch_server.people.models import Role


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role


class PersonOut(UserOut):
    online: bool = False
    unit_id: int | None = None
    active: bool = True


class PersonIn(BaseModel):
    """A new account (admins only)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(
        min_length=2,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$",
        description="Lower-case letters, digits, '.', '_' or '-'.",
    )
    display_name: str = Field(min_length=1, max_length=128)
    role: Role
    password: str = Field(
        min_length=8, max_length=256, description="At least 8 characters; kept as an argon2 hash."
    )
    unit_id: Id | None = Field(None, description="The unit the person belongs to (R15).")


class PersonPatch(BaseModel):
    """Fields to change (admins only); those left out stay as they are (``unit_id: null``: no unit)."""

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(None, min_length=1, max_length=128)
    unit_id: Id | None = None
    active: bool | None = Field(
        None, description="false disables the account: no sign-in, and its sign-ins stop renewing at once."
    )
