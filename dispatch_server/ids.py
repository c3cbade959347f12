"""Integers the API takes that reach the database, bounded to what its columns hold.

Row ids are INTEGER columns: 32-bit signed in PostgreSQL, so asyncpg refuses anything above 2**31-1
("value out of int32 range"), and SQLite anything above 2**63-1 (an OverflowError). Such a number
in a path, a query or a body used to be a 500. Every id the API takes is an :data:`Id` (or a
:data:`BigId` for the BIGINT ids of the event log and the audit log), every offset or id to start
after a :data:`Count` (:data:`BigCount`): a number out of range is a 422 that names the field,
before anything reads the database. ``tests/dispatch_server/test_ids.py`` checks the OpenAPI
document: no integer a request carries is without a maximum.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["MAX_BIG_ID", "MAX_ID", "BigCount", "BigId", "Count", "Id"]

MAX_ID = 2**31 - 1
"""The largest value of an INTEGER column (PostgreSQL's, the narrower)."""
MAX_BIG_ID = 2**63 - 1
"""The largest value of a BIGINT column."""

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
"""A row's id (an INTEGER primary key). For path, query and body fields alike."""
Count = Annotated[int, Field(ge=0, le=MAX_ID)]
"""An offset, or the id of an INTEGER-keyed row to start after (0: from the first)."""
BigId = Annotated[int, Field(ge=1, le=MAX_BIG_ID)]
"""The id of an event or an audit record (BIGINT primary keys)."""
BigCount = Annotated[int, Field(ge=0, le=MAX_BIG_ID)]
"""The id of an event to start after (0: from the first)."""
