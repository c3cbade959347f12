"""Pages of a list: the ``limit`` and ``offset`` a list endpoint takes, and the page it returns.

A list endpoint takes its page as a dependency, :data:`Paging` (50 rows by default, 200 at most) or
:data:`LongPaging` (100, 500 at most), or one of its own from :func:`page_query`; a page that says
how many rows there are in all is a subclass of :class:`Page` named after what it lists::

    class AlertPage(Page[AlertOut]): ...

    @router.get("", response_model=AlertPage)
    async def list_alerts(db_session: DbSession, page: Paging) -> AlertPage:
        items, total = await service.list_alerts(
            db_session=db_session, limit=page.limit, offset=page.offset
        )
        return AlertPage.of([AlertOut.model_validate(a) for a in items], total, page)
"""

# No ``from __future__ import annotations`` here: FastAPI reads the annotations of the dependency
# :func:`page_query` makes, and those name its arguments, which a string could not see.

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, Self, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from dispatch_server.ids import Count

__all__ = ["LongPaging", "Page", "PageQuery", "Paging", "page_query"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageQuery:
    """The page a request asks for."""

    limit: int
    """How many rows at the most."""
    offset: int
    """How many rows to pass over first."""


def page_query(*, default: int, maximum: int) -> Callable[[int, int], PageQuery]:
    """A dependency that reads ``limit`` (1 to ``maximum``, ``default`` when absent) and ``offset``
    from the query: out of range, a 422 that names the parameter."""

    def dependency(
        limit: Annotated[int, Query(ge=1, le=maximum)] = default,
        offset: Annotated[Count, Query()] = 0,
    ) -> PageQuery:
        return PageQuery(limit=limit, offset=offset)

    return dependency


Paging = Annotated[PageQuery, Depends(page_query(default=50, maximum=200))]
"""The usual page: 50 rows unless asked, 200 at most."""
LongPaging = Annotated[PageQuery, Depends(page_query(default=100, maximum=500))]
"""A page of small rows: 100 unless asked, 500 at most."""


class Page(BaseModel, Generic[T]):
    """One page of a list and how many rows the list holds."""

    items: list[T]
    total: int = Field(description="How many match the filters, over all pages.")
    limit: int
    offset: int

    @classmethod
    def of(cls, items: Sequence[T], total: int, page: PageQuery) -> Self:
        return cls(items=list(items), total=total, limit=page.limit, offset=page.offset)
