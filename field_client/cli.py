"""``zhihui-officer``: stream from the field and take directives (R1, R4, R9)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from field_client.dispatch import DispatchClient, DispatchError, SignedOut, Unreachable
from field_client.position import Fix, Walk, parse_position
from field_client.sources import open_source
from field_client.whip import WhipError, WhipPublisher

app = typer.Typer(help="Zhihui field client: publish live video and audio, receive directives.")
console = Console(highlight=False)


class Officer:
    """Shows directives as they arrive and acknowledges them (at once with ``auto_ack``)."""

    def __init__(self, client: DispatchClient, auto_ack: bool) -> None:
        self.client = client
        self.auto_ack = auto_ack
        self.pending: dict[int, dict[str, Any]] = {}
        self.acknowledged: set[int] = set()
        self.position: Fix | None = None
        """The last position reported, sent with an SOS."""

    async def on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ready":
            console.print(f"[green]Connected to dispatch as {message['user']['display_name']}[/green]")
        elif kind == "directive":
            directive = message["directive"]
            if directive["id"] in self.pending or directive["id"] in self.acknowledged:
                return
            self.pending[directive["id"]] = directive
            console.print(
                f"\n[bold yellow]DIRECTIVE 指令 #{directive['id']}[/bold yellow] from "
                f"{directive['issuer']['display_name']}: [bold]{directive['text']}[/bold] "
                f"(acknowledge by {directive['deadline']})"
            )
            if self.auto_ack:
                await self.acknowledge(directive["id"])
            else:
                console.print("Press Enter to acknowledge 确认.")
        elif kind == "alert" and message["alert"].get("kind") == "sos":
            alert = message["alert"]
            state = "acknowledged by the command room" if alert.get("acknowledged_at") else "open"
            if alert.get("resolved_at"):
                state = "resolved"
            console.print(f"[bold red]SOS 求助 #{alert['id']}[/bold red]: {state}")
        elif kind == "error":
            console.print(f"[red]Dispatch: {message.get('message')}[/red]")

    async def acknowledge(self, directive_id: int | None = None) -> None:
        if directive_id is None:
            if not self.pending:
                console.print("Nothing to acknowledge.")
                return
            directive_id = min(self.pending)
        await self.client.acknowledge(directive_id)
        self.pending.pop(directive_id, None)
        self.acknowledged.add(directive_id)
        console.print(f"[green]Acknowledged directive #{directive_id}[/green]")

    async def call_for_help(self, note: str = "") -> None:
        """Raise an SOS (R9) with the last position reported; the command room sees it at once."""
        try:
            alert = await self.client.sos(note, self.position)
        except DispatchError as exc:
            console.print(f"[red]SOS not sent: {exc}. Try again, or call the command room.[/red]")
            return
        where = " with your position" if self.position is not None else ""
        console.print(f"[bold red]SOS 求助 #{alert['id']} sent{where}[/bold red]: the command room is told.")


async def _listen(client: DispatchClient, officer: Officer) -> None:
    try:
        await client.listen(officer.on_message)
    except SignedOut as exc:
        console.print(f"[red]Signed out of dispatch ({exc}): directives stop; start again to sign in.[/red]")


async def _report_positions(officer: Officer, start: Fix, walk: bool, every: float) -> None:
    """Send the position every ``every`` seconds: fixed, or walking from ``start``."""
    client = officer.client
    walker = Walk(start) if walk else None
    while True:
        fix = walker.step(every) if walker is not None else start
        officer.position = fix
        try:
            await client.send_position(fix)
        except SignedOut:
            return
        except Unreachable:
            pass  # kept, with its time: sent with the next one that gets through
        except DispatchError as exc:
            console.print(f"[yellow]Position not sent: {exc}[/yellow]")
        await asyncio.sleep(every)


async def _keyboard(officer: Officer) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        command, _, note = line.strip().partition(" ")
        if command.lower() == "sos":
            await officer.call_for_help(note.strip())
        else:
            await officer.acknowledge()


async def run(
    server: str,
    username: str,
    password: str,
    source: str,
    device: str,
    duration: float | None,
    auto_ack: bool,
    ice_hosts: list[str],
    position: Fix | None = None,
    walk: bool = False,
    position_every: float = 5.0,
    sos: str | None = None,
) -> None:
    client = DispatchClient(server)
    publisher: WhipPublisher | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        user = await client.login(username, password)
        grant = await client.publish_grant(device)
        video, audio = open_source(source, label=user["display_name"].split(" ")[0])
        publisher = WhipPublisher(grant.whip_url, grant.grant, host_addresses=ice_hosts)
        await publisher.start(video, audio)
        console.print(f"[green]Publishing[/green] stream {grant.stream_id} from {source}")
        officer = Officer(client, auto_ack)
        officer.position = position
        tasks.append(asyncio.create_task(_listen(client, officer)))
        if position is not None:
            tasks.append(asyncio.create_task(_report_positions(officer, position, walk, position_every)))
        if sos is not None:
            await officer.call_for_help(sos)
        if sys.stdin.isatty():
            console.print("Type [bold]sos[/bold] (and a few words) then Enter to call for help 求助.")
            tasks.append(asyncio.create_task(_keyboard(officer)))
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if publisher is not None:
            await publisher.stop()
        await client.close()


@app.command()
def main(
    server: Annotated[str, typer.Option(help="Dispatch server URL.")] = "http://127.0.0.1:8000",
    username: Annotated[str, typer.Option(prompt=True, help="Officer username.")] = ...,  # type: ignore[assignment]
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, envvar="ZHIHUI_OFFICER_PASSWORD", help="Password.")
    ] = ...,  # type: ignore[assignment]
    source: Annotated[
        str,
        typer.Option(
            help="'pattern' (moving test pattern + tone), 'camera[:N]' (OpenCV), a video file, "
            "or 'black' / 'frozen' (drills of the relay's video health alerts)."
        ),
    ] = "pattern",
    device: Annotated[str, typer.Option(help="Device name shown on the wall.")] = "bodycam",
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    auto_ack: Annotated[bool, typer.Option(help="Acknowledge directives as soon as they arrive.")] = False,
    ice_host: Annotated[
        list[str] | None, typer.Option(help="Only offer ICE candidates on this local address (repeatable).")
    ] = None,
    position: Annotated[
        str | None,
        typer.Option(help="Report this position, 'latitude,longitude' in degrees (e.g. 31.2304,121.4737)."),
    ] = None,
    walk: Annotated[
        bool, typer.Option(help="Simulate a walk from --position (a demo for the wall), at 1.4 m/s.")
    ] = False,
    position_every: Annotated[float, typer.Option(min=1.0, help="Seconds between position reports.")] = 5.0,
    sos: Annotated[
        str | None,
        typer.Option(
            help="Call for help as soon as signed in, with this note (and --position if given); "
            "at the keyboard, type 'sos' then Enter."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option(help="Log details.")] = False,
) -> None:
    """Sign in, publish over WHIP, and show directives until stopped (Ctrl+C). At the keyboard,
    Enter acknowledges the oldest directive and 'sos <note>' calls for help (R9)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    try:
        start = parse_position(position) if position is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--position") from None
    if walk and start is None:
        raise typer.BadParameter("--walk needs --position to start from", param_hint="--walk")
    try:
        asyncio.run(
            run(
                server,
                username,
                password,
                source,
                device,
                duration,
                auto_ack,
                ice_host or [],
                position=start,
                walk=walk,
                position_every=position_every,
                sos=sos,
            )
        )
    except (DispatchError, WhipError, ValueError, RuntimeError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("Stopped.")


if __name__ == "__main__":
    app()
