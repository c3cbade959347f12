"""``zhihui``: run and administer Zhihui from the command line."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import uvicorn
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from zhihui.settings import Settings, load_settings

if TYPE_CHECKING:
    from media_relay.recording.verify import StreamReport

T = TypeVar("T")

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
    base = _settings()  # settings that will not do are refused before the app's slow imports
    from dispatch_server.app import create_app

    http = base.http.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    settings = base.model_copy(update={"http": http})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    admin_password, demo_rows = _run_db(_bootstrap(settings, demo))

    url = settings.public_url
    console.print("[bold]Zhihui 指挥[/bold] is starting")
    console.print(f"  Video wall   {url}/wall")
    console.print(f"  Officer page {url}/officer")
    console.print(f"  API docs     {url}/api/docs")
    console.print(f"  Database     {settings.effective_database_url.split('@')[-1]}")
    console.print(f"  Recordings   {settings.recording.root.resolve()}")
    if not settings.relay_node.in_process:
        console.print(f"  Relay        apart, at {settings.relay_url} (`zhihui relay` nodes report here)")
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


@app.command()
def relay(
    host: Annotated[str | None, typer.Option(help="Listen address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from settings).")] = None,
    log_level: Annotated[str, typer.Option(help="Server log level.")] = "info",
) -> None:
    """Start a media relay alone, as a node of its own (R18): it reports to the dispatch server at
    relay_node.dispatch_url, with relay_node.secret. Exit code 2: settings missing or not valid."""
    base = _settings()
    missing = base.relay_node.missing_to_run_apart()
    if missing is not None:  # said before the relay's slow imports
        console.print(f"[red]{missing}[/red]", soft_wrap=True)
        raise typer.Exit(2)
    from media_relay.node import NodeConfigError, create_relay_node_app

    http = base.http.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    settings = base.model_copy(update={"http": http})
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        relay_app = create_relay_node_app(settings)
    except NodeConfigError as error:
        console.print(f"[red]{error}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(f"[bold]Zhihui 指挥[/bold] relay node {settings.relay_node.name!r} is starting")
    console.print(f"  WHIP/WHEP    http://{settings.http.host}:{settings.http.port}/whip, /whep/<stream>")
    console.print(f"  Reports to   {settings.relay_node.dispatch_url}")
    console.print(f"  Recordings   {settings.recording.root.resolve()}")
    uvicorn.run(relay_app, host=settings.http.host, port=settings.http.port, log_level=log_level)


PROGRESS_FROM_FILES = 20  # show a progress bar when checking at least this many files


@app.command()
def verify(
    stream_ids: Annotated[
        list[str] | None, typer.Argument(help="Streams to check, by id.", show_default=False)
    ] = None,
    incident: Annotated[
        int | None, typer.Option("--incident", help="Check every stream of this incident (by id).")
    ] = None,
    all_streams: Annotated[bool, typer.Option("--all", help="Check every stream in the archive.")] = False,
    root: Annotated[Path | None, typer.Option(help="Archive root (default: recording.root).")] = None,
) -> None:
    """Check recordings (R2): rehash every segment, walk each manifest's hash chain, and compare each
    manifest with the catalog. Lawfully deleted segments are listed, not reported. Audited.

    Exit code 0: intact. 1: something is wrong (each problem is listed). 2: bad usage. 3: no database.
    """
    from dispatch_server.archive import local
    from dispatch_server.errors import NotFound

    if sum((bool(stream_ids), incident is not None, all_streams)) != 1:
        console.print("[red]Name the streams to check, or --incident ID, or pass --all (one of them).[/red]")
        raise typer.Exit(2)
    settings = _settings()
    archive = root or settings.recording.root
    try:
        plan = _run_db(
            local.plan_verify(
                settings,
                root=archive,
                stream_ids=list(stream_ids or []),
                incident_id=incident,
                all_streams=all_streams,
            )
        )
    except NotFound as error:
        console.print(f"[red]{error.message}[/red]")
        raise typer.Exit(2) from None
    if plan.incident is not None:
        console.print(f"Incident {incident}: {plan.incident} ({len(plan.targets)} recorded stream(s))")
    for stream_id in plan.unrecorded:
        console.print(f"  {stream_id}: nothing recorded")
    files = plan.files
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=len(files) < PROGRESS_FROM_FILES,
    ) as progress:
        task = progress.add_task("verifying", total=sum(path.stat().st_size for path in files))

        def advance(stream_id: str, size: int) -> None:
            progress.update(task, description=stream_id, advance=size)

        reports = _run_db(local.run_verify(settings, plan, progress=advance))
    _print_verify_reports(archive, reports, time.monotonic() - started)
    raise typer.Exit(0 if all(report.ok for report in reports) else 1)


def _print_verify_reports(archive: Path, reports: list[StreamReport], seconds: float) -> None:
    if not reports:
        console.print(f"No recordings under {archive}.")
        return
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("stream", no_wrap=True)
    for heading in ("segments", "gaps", "deleted", "MB"):
        table.add_column(heading, justify="right", no_wrap=True)
    table.add_column("chain head", no_wrap=True)
    table.add_column("result", no_wrap=True)
    for report in reports:
        table.add_row(
            report.stream_id,
            f"{report.segments}" + (f" ({report.recovered} recovered)" if report.recovered else ""),
            str(report.gaps),
            str(report.deleted),
            f"{report.bytes_hashed / 1e6:.1f}",
            report.head[:8],
            "[green]intact[/green]" if report.ok else f"[red]{_problems(len(report.problems))}[/red]",
        )
    console.print(table)
    for report in reports:
        for deletion in report.deletions:
            console.print(
                f"  [bold]{report.stream_id}[/bold]  manifest line {deletion.line}  "
                f"{_count(len(deletion.segments), 'segment')} deleted ({deletion.basis}) "
                f"{deletion.deleted_at} by {deletion.deleted_by}: {deletion.reason}",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )
        for problem in report.problems:
            where = [f"manifest line {problem.line}" if problem.line else "", problem.file or ""]
            console.print(
                f"[red]✗[/red] [bold]{report.stream_id}[/bold]  {'  '.join(w for w in where if w)}  "
                f"[red]{problem.kind.value}[/red]" + (f": {problem.note}" if problem.note else ""),
                soft_wrap=True,
            )
            console.print(f"    expected  {problem.expected}", soft_wrap=True)
            console.print(f"    found     {problem.found}", soft_wrap=True)
    checked = sum(report.bytes_hashed for report in reports)
    speed = checked / 1e9 / seconds if seconds > 0 else 0.0
    segments = sum(report.segments for report in reports)
    summary = (
        f"{len(reports)} stream(s), {segments} segment(s), {checked / 1e6:.1f} MB checked "
        f"in {seconds:.1f} s ({speed:.2f} GB/s): "
    )
    broken = [report for report in reports if not report.ok]
    if broken:
        problems = sum(len(report.problems) for report in broken)
        message = f"[red]{_problems(problems)} in {len(broken)} stream(s)[/red]"
        console.print(summary + message, soft_wrap=True)
    else:
        console.print(summary + "[green]all intact[/green]", soft_wrap=True)


def _problems(count: int) -> str:
    return _count(count, "problem")


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


user_app = typer.Typer(help="Accounts: people who sign in.", no_args_is_help=True)
app.add_typer(user_app, name="user")


async def _add_user(settings: Settings, username: str, display_name: str, role: str, password: str) -> int:
    from dispatch_server.db import Database
    from dispatch_server.people import service as people
    from dispatch_server.people.models import Role

    db = Database(settings.effective_database_url)
    try:
        await db.start()
        async with db.sessions() as db_session:
            person = await people.create(
                db_session=db_session,
                username=username.strip().lower(),
                display_name=display_name,
                role=Role(role),
                password=password,
            )
            await db_session.commit()
            return person.id
    finally:
        await db.stop()


ROLE_NAMES = ("field_officer", "duty_officer", "commander", "leader", "upper_observer", "external", "admin")


@user_app.command("add")
def add_user(
    username: Annotated[str, typer.Argument(help="Lower-case letters, digits, '.', '_' or '-'.")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLE_NAMES)}.")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the username).")] = None,
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="ZHIHUI_NEW_USER_PASSWORD",
            help="At least 8 characters. Asked for when not given (or set ZHIHUI_NEW_USER_PASSWORD).",
        ),
    ] = "",
) -> None:
    """Create an account in the configured database (argon2-hashed password)."""
    from dispatch_server.errors import DomainError

    if role not in ROLE_NAMES:
        console.print(f"[red]Unknown role {role!r}: one of {', '.join(ROLE_NAMES)}.[/red]")
        raise typer.Exit(2)
    settings = _settings()
    try:
        person_id = _run_db(_add_user(settings, username, name or username, role, password))
    except DomainError as exc:
        console.print(f"[red]Not created: {exc.message}[/red]")
        raise typer.Exit(1) from None
    console.print(f"Created {role} {username.strip().lower()} (id {person_id}).")


def _utc(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time; one without a zone is taken as UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        console.print(f"[red]{option} {text!r} is not an ISO 8601 time (e.g. 2026-05-01T09:30:00Z).[/red]")
        raise typer.Exit(2) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the package into (created).")],
    stream: Annotated[
        list[str] | None, typer.Option("--stream", help="A stream to export, by id (repeatable).")
    ] = None,
    since: Annotated[str | None, typer.Option("--from", help="Start of a time range (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option("--to", help="End of the time range.")] = None,
    officer: Annotated[
        list[str] | None,
        typer.Option("--officer", help="Only this officer's streams (username; repeatable)."),
    ] = None,
) -> None:
    """Export an evidence package (issue 4): per stream a WebM/MP4 (stream copy), the original
    segments, the manifests, SHA256SUMS and a SUMMARY.txt. Audited.

    Exit code 0: written. 1: nothing to export, or it failed. 2: bad usage.
    """
    start, end = _utc(since, "--from"), _utc(until, "--to")
    if not stream and (start is None or end is None):
        console.print("[red]Name --stream, or give a time range with --from and --to.[/red]")
        raise typer.Exit(2)
    if (out / "SUMMARY.txt").exists():
        console.print(f"[red]{out} already holds a package.[/red]")
        raise typer.Exit(2)
    from dispatch_server.archive import local
    from dispatch_server.errors import DomainError

    settings = _settings()
    with Progress(
        TextColumn("exporting"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(), console=console
    ) as bar:
        task = bar.add_task("export", total=1.0)
        try:
            plan = _run_db(
                local.export_package(
                    settings,
                    stream_ids=list(stream or []),
                    since=start,
                    until=end,
                    officers=list(officer or []),
                    out=out,
                    progress=lambda fraction: bar.update(task, completed=fraction),
                )
            )
        except DomainError as error:
            bar.stop()
            console.print(f"[red]{error.message}[/red]")
            raise typer.Exit(1) from None
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("stream", no_wrap=True)
    for heading in ("segments", "gaps", "MB"):
        table.add_column(heading, justify="right", no_wrap=True)
    for item in plan.streams:
        size = sum(segment.bytes for segment in item.segments)
        table.add_row(item.stream_id, str(len(item.segments)), str(len(item.gaps)), f"{size / 1e6:.1f}")
    console.print(table)
    console.print(f"Evidence package written to {out.resolve()} (SUMMARY.txt, SHA256SUMS).")


@app.command()
def delete(
    stream_id: Annotated[str, typer.Argument(help="The stream whose recording to delete.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is deleted now (kept in the audit log).")],
) -> None:
    """Delete a stream's recording once its retention is over and no evidence hold keeps it (R2).

    Refused, with the reason, while the stream is live, held, inside its retention
    (recording.retention_days after it ended) or not intact. The segments are tombstoned in the
    stream's manifest, so `zhihui verify` explains them, then removed. Every attempt is audited.

    Exit code 0: deleted. 1: refused or failed. 2: bad usage.
    """
    from dispatch_server.archive import local
    from dispatch_server.errors import DomainError

    if len(reason.strip()) < 3:
        console.print("[red]Give a reason (--reason), at least 3 characters.[/red]")
        raise typer.Exit(2)
    settings = _settings()
    try:
        deletion = _run_db(local.delete_recording(settings, stream_id=stream_id, reason=reason))
    except DomainError as error:
        console.print(f"[red]Not deleted: {error.message}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(
        f"Deleted the recording of {stream_id}: {_count(deletion.segments, 'segment')}, "
        f"{deletion.bytes / 1e6:.1f} MB (kept until {deletion.kept_until.isoformat()}). "
        f"Tombstone {deletion.entry_hash[:12]} in its manifest.",
        soft_wrap=True,
    )


db_app = typer.Typer(help="The database: its schema, and the role the app connects as.", no_args_is_help=True)
app.add_typer(db_app, name="db")


DATABASE_UNREACHABLE = 3
"""Exit code of every command that needs the database when it cannot be reached."""


def _run_db(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's database work. A database it will not migrate is reported (exit code 1), and
    one it cannot reach (not running, wrong address, name or password, unreadable file) is
    reported with where it was looked for (exit code 3): a message, never a traceback."""
    import socket

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from dispatch_server.db import UnusableDatabase
    from dispatch_server.migrations import SchemaError

    try:
        return asyncio.run(coroutine)
    except UnusableDatabase as error:
        console.print(f"[red]Could not use the database: {error}[/red]", soft_wrap=True)
        raise typer.Exit(DATABASE_UNREACHABLE) from None
    except SchemaError as error:
        console.print(f"[red]{error}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    except (DBAPIError, ConnectionError, TimeoutError, socket.gaierror) as error:
        settings = _settings()
        where = make_url(settings.effective_database_url).render_as_string(hide_password=True)
        reason = str(error.orig if isinstance(error, DBAPIError) else error).splitlines()[0]
        console.print(
            f"[red]Could not use the database at {where}: {reason}[/red]\n"
            "Is it running, and is database_url (ZHIHUI_DATABASE_URL) right?",
            soft_wrap=True,
        )
        raise typer.Exit(DATABASE_UNREACHABLE) from None


async def _schema_revision(settings: Settings, upgrade: bool) -> tuple[str | None, str | None, str]:
    from dispatch_server.db import Database

    db = Database(settings.effective_database_url)
    try:
        before, newest = await db.schema_revision()
        if upgrade:
            await db.start()
        after, _ = await db.schema_revision()
        return before, after, newest
    finally:
        await db.stop()


@db_app.command("upgrade")
def upgrade_database() -> None:
    """Bring the schema to this Zhihui's newest revision (``zhihui up`` does it too). On PostgreSQL
    with an app role of its own, run it as the schema's owner before starting a new version."""
    settings = _settings()
    before, after, _ = _run_db(_schema_revision(settings, upgrade=True))
    where = settings.effective_database_url.split("@")[-1]
    if before == after:
        said = f"The schema in {where} is at revision {after}, the newest: nothing to do."
    else:
        said = f"The schema in {where} went from revision {before or '(none)'} to {after}."
    console.print(said, soft_wrap=True)


@db_app.command("current")
def current_database() -> None:
    """Show the schema's revision and this Zhihui's newest. Exit code 0: up to date; 1: behind (or
    empty, or made before migrations)."""
    settings = _settings()
    _, current, newest = _run_db(_schema_revision(settings, upgrade=False))
    if current == newest:
        console.print(f"Revision {current}, the newest.")
        return
    console.print(
        f"Revision {current or '(none: empty, or made before migrations)'}; this Zhihui's newest is "
        f"{newest}: `zhihui up` or `zhihui db upgrade` migrates.",
        soft_wrap=True,
    )
    raise typer.Exit(1)


@db_app.command("revision")
def new_revision(
    message: Annotated[str, typer.Option("-m", "--message", help="What the revision changes.")],
) -> None:
    """For developers: write a new migration with what the models have and the migrations do not make
    (dispatch_server/migrations/versions/). Read it before committing: renames, triggers and data
    need a hand. Exit code 1: nothing to write."""
    from dispatch_server.migrations import make_revision

    written = make_revision(message)
    if written is None:
        console.print("The migrations already make what the models describe: nothing written.")
        raise typer.Exit(1)
    console.print(f"Wrote {written}")


async def _setup_database(settings: Settings, app_role: str | None) -> None:
    from dispatch_server.audit.roles import grant_app_role
    from dispatch_server.db import Database

    db = Database(settings.effective_database_url)
    try:
        await db.start()
        if app_role is not None:
            async with db.engine.begin() as connection:
                await grant_app_role(connection, app_role)
    finally:
        await db.stop()


@db_app.command("setup")
def setup_database(
    app_role: Annotated[
        str | None,
        typer.Option(
            "--app-role",
            help="PostgreSQL: the role `zhihui up` connects as. It gets every privilege it needs, "
            "except changing or removing audit rows (R17).",
        ),
    ] = None,
) -> None:
    """Create or migrate the schema in the configured database (run it as the schema's owner, an
    administrator's role), and make the app's own role ready. Again after an upgrade. Idempotent."""
    settings = _settings()
    try:
        _run_db(_setup_database(settings, app_role))
    except ValueError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    console.print(f"The schema is ready in {settings.effective_database_url.split('@')[-1]}.")
    if app_role is not None:
        console.print(f"{app_role} may use every table, and may only add to the audit log (audit_event).")


@app.command()
def redact(
    stream: Annotated[str, typer.Option("--stream", help="The stream to redact, by id.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the copy and its sidecar into.")],
    since: Annotated[str | None, typer.Option("--from", help="Start of a time range (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option("--to", help="End of the time range.")] = None,
) -> None:
    """Make a copy of a stream's recording (or a time range of it) with the faces blurred (issue 4):
    a WebM or MP4 and a sidecar JSON naming the source segments' hashes. The segments are only read.
    Catalogued and audited.

    Exit code 0: written. 1: nothing to redact, or it failed. 2: bad usage.
    """
    start, end = _utc(since, "--from"), _utc(until, "--to")
    if start is not None and end is not None and end <= start:
        console.print("[red]--to must come after --from.[/red]")
        raise typer.Exit(2)
    from dispatch_server.archive import redaction
    from dispatch_server.errors import DomainError

    out.mkdir(parents=True, exist_ok=True)
    settings = _settings()
    with Progress(
        TextColumn("redacting"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(), console=console
    ) as bar:
        task = bar.add_task("redact", total=1.0)
        try:
            redaction_id, built = _run_db(
                redaction.redact_locally(
                    settings,
                    stream_id=stream,
                    since=start,
                    until=end,
                    out=out,
                    progress=lambda fraction: bar.update(task, completed=fraction),
                )
            )
        except DomainError as error:
            bar.stop()
            console.print(f"[red]{error.message}[/red]")
            raise typer.Exit(1) from None
    console.print(
        f"Redaction {redaction_id}: {built.frames} picture(s), faces blurred in {built.frames_with_faces}; "
        f"written to {built.path} (sha256 {built.sha256}) with {built.path.name}.json beside it."
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
