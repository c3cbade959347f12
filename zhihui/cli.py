"""``zhihui``: run and administer Zhihui from the command line."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from zhihui.settings import Settings, load_settings

app = typer.Typer(help="Zhihui (指挥): field dispatch and bodycam video command.", no_args_is_help=True)
console = Console(highlight=False)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        console.print(f"[red]The settings are not valid:[/red]\n{exc}")
        raise typer.Exit(2) from None


async def _bootstrap(settings: Settings, demo: bool) -> tuple[str | None, list[tuple[str, str, str]]]:
    from dispatch_server.db import Database
    from dispatch_server.people import service as people

    db = Database(settings.effective_database_url)
    try:
        await db.start()
        async with db.sessions() as db_session:
            admin_password = await people.ensure_first_admin(db_session=db_session)
            demo_people = await people.ensure_demo_people(db_session=db_session) if demo else []
            await db_session.commit()
            rows = [(p.role.value, p.username, password) for p, password in demo_people]
    finally:
        await db.stop()
    return admin_password, rows


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Also create a demo commander and two officers.")] = False,
    host: Annotated[str | None, typer.Option(help="Listen address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from settings).")] = None,
    log_level: Annotated[str, typer.Option(help="Server log level.")] = "info",
) -> None:
    """Start the dispatch server and the media relay on this machine."""
    from dispatch_server.app import create_app

    base = _settings()
    http = base.http.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    settings = base.model_copy(update={"http": http})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    admin_password, demo_rows = asyncio.run(_bootstrap(settings, demo))

    url = settings.public_url
    console.print("[bold]Zhihui 指挥[/bold] is starting")
    console.print(f"  Video wall   {url}/wall")
    console.print(f"  Officer page {url}/officer")
    console.print(f"  API docs     {url}/api/docs")
    console.print(f"  Database     {settings.effective_database_url.split('@')[-1]}")
    console.print(f"  Recordings   {settings.recording.root.resolve()}")
    if admin_password:
        console.print("First start: an administrator was created. This password is shown only once:")
        console.print(f"  admin {admin_password}")
    if demo_rows:
        console.print("Demo accounts (new passwords at every --demo start):")
        for role, username, password in demo_rows:
            console.print(f"  {role:<14} {username:<10} {password}")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.http.host,
        port=settings.http.port,
        log_level=log_level,
        ws_max_size=64 * 1024,
    )


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings (secrets hidden)."""
    settings = _settings()
    table = Table("setting", "value")
    for key, value in settings.model_dump(mode="json").items():
        table.add_row(key, str(value))
    console.print(table)


if __name__ == "__main__":
    app()
