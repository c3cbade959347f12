from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from dispatch_server.people.models import Role


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role


class PersonOut(UserOut):
    online: bool = False
