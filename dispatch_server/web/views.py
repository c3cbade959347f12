"""The pages: plain HTML and ES modules, no build step (DESIGN.md decision 7)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/")
async def index() -> FileResponse:
    return _page("index.html")


@router.get("/wall")
async def wall() -> FileResponse:
    return _page("wall.html")


@router.get("/officer")
async def officer() -> FileResponse:
    return _page("officer.html")
