"""R17: every role against every REST endpoint, the status each must get. The endpoints come from
the app's own OpenAPI document: a new endpoint without a row here fails the test, so nobody adds
one without deciding who may call it. People of every role are made with ``zhihui user add`` and
the admin-only ``POST /api/people``."""

from __future__ import annotations

import itertools
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import ApiClient
from tests.support import ZhihuiProcess, login, run_zhihui, running_zhihui

ROLES = ("field_officer", "duty_officer", "commander", "leader", "upper_observer", "external", "admin")
COLUMNS = ("anonymous", *ROLES)
PASSWORD = "rbac-password-1"


@dataclass
class World:
    """The people of every role, and what the requests name."""

    zhihui: ZhihuiProcess
    people: dict[str, ApiClient]
    stream_id: str = ""

    def client(self, column: str) -> httpx.Client:
        if column == "anonymous":
            return httpx.Client(base_url=self.zhihui.base_url, timeout=15)
        return self.people[column].http

    def id(self, role: str) -> int:
        return self.people[role].id

    def incident(self) -> int:
        """A new incident with the field officer on it, shared with the observer."""
        admin = self.people["admin"].http
        body = {"kind": "major", "title": "RBAC", "officer_ids": [self.id("field_officer")]}
        incident_id = int(admin.post("/api/incidents", json=body).json()["id"])
        admin.post(f"/api/incidents/{incident_id}/shares", json={"person_ids": [self.id("upper_observer")]})
        return incident_id

    def directive(self) -> int:
        body = {"target_ids": [self.id("field_officer")], "text": "RBAC"}
        return int(self.people["admin"].http.post("/api/directives", json=body).json()["id"])

    def acknowledged_directive(self) -> int:
        """A directive to the field officer, who has acknowledged it (so it may report it done)."""
        directive_id = self.directive()
        self.people["field_officer"].http.post(f"/api/directives/{directive_id}/ack")
        return directive_id

    def unit(self) -> int:
        body = {"name": f"Unit {secrets.token_hex(4)}"}
        return int(self.people["admin"].http.post("/api/units", json=body).json()["id"])

    def device(self) -> int:
        body = {"kind": "bodycam", "serial": f"BC-{secrets.token_hex(4)}"}
        return int(self.people["admin"].http.post("/api/devices", json=body).json()["id"])

    def refresh_token(self, column: str) -> str:
        """A fresh sign-in's refresh token for this column's person (anonymous: a made-up one)."""
        if column not in ROLES:
            return "not-a-refresh-token"
        username = str(self.people[column].user["username"])
        return str(login(self.zhihui.base_url, username, PASSWORD)["refresh_token"])


@dataclass(frozen=True)
class Row:
    """One endpoint: how to call it, and the status each column must get."""

    expect: dict[str, int]
    params: Callable[[World], dict[str, Any]] = lambda world: {}
    body: Callable[[World, str], Any] | None = None


def allow(ok: int, who: set[str], denied: int = 403) -> dict[str, int]:
    """``ok`` for the roles in ``who``, ``denied`` for the others, 401 without a token."""
    return {"anonymous": 401} | {role: ok if role in who else denied for role in ROLES}


EVERYONE = set(ROLES)
WATCH = {"commander", "leader", "duty_officer", "admin"}
COMMAND = {"commander", "leader", "admin"}
MANAGE = COMMAND | {"duty_officer"}
READ_INCIDENTS = WATCH | {"field_officer", "upper_observer"}
NOTES = WATCH | {"field_officer"}
FIELD_OPS = WATCH | {"field_officer"}
POSITIONS = WATCH | {"field_officer"}


def _incident(world: World) -> dict[str, Any]:
    return {"incident_id": world.incident()}


def _incident_and_officer(world: World) -> dict[str, Any]:
    return {"incident_id": world.incident(), "person_id": world.id("field_officer")}


def _incident_and_observer(world: World) -> dict[str, Any]:
    return {"incident_id": world.incident(), "person_id": world.id("upper_observer")}


def _escalation_to_the_leader(world: World) -> dict[str, Any]:
    """A new incident escalated to the leader on duty (nobody holds the post: the first leader)."""
    params = _incident(world)
    body = {"target": "leader_on_duty", "reason": "RBAC"}
    escalated = world.people["admin"].http.post(
        "/api/incidents/{incident_id}/escalations".format(**params), json=body
    )
    return params | {"escalation_id": escalated.json()["id"]}


def _stream(world: World) -> dict[str, Any]:
    return {"stream_id": world.stream_id}


def _hold(world: World) -> dict[str, Any]:
    """A new evidence hold on the world's stream, placed by the admin."""
    body = {"stream_id": world.stream_id, "reason": "RBAC hold"}
    return {"hold_id": world.people["admin"].http.post("/api/holds", json=body).json()["id"]}


def _no_export(world: World) -> dict[str, Any]:
    return {"export_id": 999999}


def _open_sos(world: World) -> dict[str, Any]:
    """The field officer's open SOS (raised now, or the one open already)."""
    return {"alert_id": world.people["field_officer"].http.post("/api/alerts/sos", json={}).json()["id"]}


def _sos_with_none_open(world: World, column: str) -> dict[str, Any]:
    """An SOS, the officer's previous one resolved first, so that it raises a new one."""
    admin = world.people["admin"].http
    mine = {"kind": "sos", "person_id": world.id("field_officer")}
    for alert in admin.get("/api/alerts", params=mine).json()["items"]:
        admin.post(f"/api/alerts/{alert['id']}/resolve", json={"note": "RBAC"})
    return {"position": {"latitude": 39.9042, "longitude": 116.4074, "accuracy_m": 12}}


def _unit(world: World) -> dict[str, Any]:
    return {"unit_id": world.unit()}


def _device(world: World) -> dict[str, Any]:
    return {"device_id": world.device()}


# Duty (R10). Everyone the roster names is one duty officer of its own, never a column, so that a
# handover addressed to nobody (the next rostered is that same writer) may be accepted by anyone.
DESK = "command-desk"
_duty_writers: dict[int, ApiClient] = {}
_shift_slots = itertools.count()


def _duty_writer(world: World) -> ApiClient:
    """A duty officer signed in on the command desk, who writes the handovers."""
    if id(world) not in _duty_writers:
        created = world.people["admin"].http.post("/api/people", json=_account("duty-writer", "duty_officer"))
        assert created.status_code == 201, created.text
        writer = ApiClient(world.zhihui.base_url, "duty-writer", PASSWORD)
        assert writer.http.post("/api/duty/sign-in", json={"post": DESK}).status_code == 200
        _duty_writers[id(world)] = writer
    return _duty_writers[id(world)]


def _new_shift(world: World, column: str = "") -> dict[str, Any]:
    """A two-hour shift of the writer on the desk, a month ahead, after every other one."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30, hours=2 * next(_shift_slots))
    return {
        "person_id": _duty_writer(world).id,
        "post": DESK,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
    }


def _shift(world: World) -> dict[str, Any]:
    created = world.people["admin"].http.post("/api/duty/shifts", json=_new_shift(world))
    return {"shift_id": created.json()["id"]}


def _handover(world: World, item: bool = False) -> dict[str, Any]:
    body = {"post": DESK, "notes": "RBAC", "items": [{"text": "RBAC item"}] if item else []}
    written = _duty_writer(world).http.post("/api/duty/handovers", json=body).json()
    return {"handover_id": written["id"], "item_id": written["items"][-1]["id"] if item else 0}


def _signed_in_on_desk(world: World, column: str) -> dict[str, Any]:
    """The column signed in on the desk first (as far as it may), to sign out or hand over."""
    if column in WATCH:
        world.client(column).post("/api/duty/sign-in", json={"post": DESK})
    return {"post": DESK}


def _field_operation_body(world: World, column: str = "") -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "case_number": "(2026)RBAC1号",
        "place": "RBAC Street",
        "team_ids": [world.id("field_officer")],
        "planned_start": now.isoformat(),
        "planned_end": (now + timedelta(hours=2)).isoformat(),
    }


def _field_operation(world: World) -> dict[str, Any]:
    """A new field operation with the field officer on its team."""
    created = world.people["admin"].http.post("/api/field-operations", json=_field_operation_body(world))
    return {"field_operation_id": created.json()["id"]}


def _running_field_operation(world: World) -> dict[str, Any]:
    params = _field_operation(world)
    world.people["admin"].http.post("/api/field-operations/{field_operation_id}/start".format(**params))
    return params


def _position(world: World, column: str = "") -> dict[str, Any]:
    """One fix taken just now (each reporter's own)."""
    at = datetime.now(UTC).isoformat()
    return {"latitude": 31.2304, "longitude": 121.4737, "accuracy_m": 10, "at": at}


def _new_person(world: World, column: str) -> dict[str, Any]:
    username = f"new-{secrets.token_hex(4)}"
    return {"username": username, "display_name": username, "role": "field_officer", "password": PASSWORD}


MATRIX: dict[tuple[str, str], Row] = {
    ("POST", "/api/auth/login"): Row(
        expect={"anonymous": 401} | {role: 200 for role in ROLES},
        body=lambda world, column: {
            "username": world.people[column].user["username"] if column in ROLES else "nobody",
            "password": PASSWORD,
        },
    ),
    ("POST", "/api/auth/refresh"): Row(
        expect={"anonymous": 401} | {role: 200 for role in ROLES},
        body=lambda world, column: {"refresh_token": world.refresh_token(column)},
    ),
    ("POST", "/api/auth/logout"): Row(  # the refresh token is the credential; any answer is 204
        expect={column: 204 for column in COLUMNS},
        body=lambda world, column: {"refresh_token": world.refresh_token(column)},
    ),
    ("GET", "/api/me"): Row(allow(200, EVERYONE)),
    ("GET", "/api/people"): Row(allow(200, WATCH)),
    ("POST", "/api/people"): Row(allow(201, {"admin"}), body=_new_person),
    ("PATCH", "/api/people/{person_id}"): Row(
        allow(200, {"admin"}),
        params=lambda w: {"person_id": w.id("field_officer")},
        body=lambda w, c: {"display_name": "Field Officer 1"},
    ),
    # Units and devices (R15): the command room reads them, admins keep them.
    ("GET", "/api/units"): Row(allow(200, WATCH)),
    ("POST", "/api/units"): Row(
        allow(201, {"admin"}), body=lambda w, c: {"name": f"U-{secrets.token_hex(4)}"}
    ),
    ("GET", "/api/units/{unit_id}"): Row(allow(200, WATCH), params=_unit),
    ("PATCH", "/api/units/{unit_id}"): Row(
        allow(200, {"admin"}), params=_unit, body=lambda w, c: {"name": f"U-{secrets.token_hex(4)}"}
    ),
    ("DELETE", "/api/units/{unit_id}"): Row(allow(204, {"admin"}), params=_unit),
    ("GET", "/api/devices"): Row(allow(200, WATCH)),
    ("POST", "/api/devices"): Row(
        allow(201, {"admin"}), body=lambda w, c: {"kind": "radio", "serial": f"R-{secrets.token_hex(4)}"}
    ),
    ("GET", "/api/devices/{device_id}"): Row(allow(200, WATCH), params=_device),
    ("PATCH", "/api/devices/{device_id}"): Row(
        allow(200, {"admin"}), params=_device, body=lambda w, c: {"status": "in_repair"}
    ),
    ("DELETE", "/api/devices/{device_id}"): Row(allow(204, {"admin"}), params=_device),
    ("POST", "/api/grants/publish"): Row(
        allow(200, {"field_officer"}), body=lambda w, c: {"device": "phone"}
    ),
    ("POST", "/api/grants/view"): Row(allow(200, WATCH), body=lambda w, c: {"stream_ids": [w.stream_id]}),
    ("GET", "/api/grants/public-key"): Row({column: 200 for column in COLUMNS}),  # public: relays verify
    ("GET", "/api/health"): Row({column: 200 for column in COLUMNS}),  # public: load balancers ask
    ("POST", "/api/relay/events"): Row(  # relay nodes only, with their shared secret: no person at all
        {column: 401 for column in COLUMNS},
        body=lambda w, c: {"node": "rbac", "event": {"type": "relay_started", "at": "2026-01-01T00:00:00Z"}},
    ),
    ("GET", "/api/streams"): Row(allow(200, WATCH)),
    ("POST", "/api/directives"): Row(
        allow(201, COMMAND),
        body=lambda w, c: {
            "target_ids": [w.id("field_officer")],
            "text": "Matrix",
            "ack_deadline_seconds": 600,
        },
    ),
    ("GET", "/api/directives"): Row(allow(200, EVERYONE)),
    ("POST", "/api/directives/{directive_id}/ack"): Row(  # only its target; to others it is not there
        allow(200, {"field_officer"}, denied=404), params=lambda w: {"directive_id": w.directive()}
    ),
    ("POST", "/api/directives/{directive_id}/done"): Row(  # its target, after acknowledging it
        allow(200, {"field_officer"}, denied=404),
        params=lambda w: {"directive_id": w.acknowledged_directive()},
    ),
    ("GET", "/api/escalations"): Row(allow(200, WATCH)),
    ("POST", "/api/incidents"): Row(
        allow(201, MANAGE), body=lambda w, c: {"kind": "routine", "title": "Matrix"}
    ),
    ("GET", "/api/incidents"): Row(allow(200, READ_INCIDENTS)),
    ("GET", "/api/incidents/{incident_id}"): Row(allow(200, READ_INCIDENTS), params=_incident),
    ("PATCH", "/api/incidents/{incident_id}"): Row(
        allow(200, MANAGE), params=_incident, body=lambda w, c: {"place": "Court 3"}
    ),
    ("POST", "/api/incidents/{incident_id}/officers"): Row(
        allow(200, MANAGE), params=_incident, body=lambda w, c: {"person_ids": [w.id("field_officer")]}
    ),
    ("DELETE", "/api/incidents/{incident_id}/officers/{person_id}"): Row(
        allow(200, MANAGE), params=_incident_and_officer
    ),
    ("GET", "/api/incidents/{incident_id}/shares"): Row(allow(200, COMMAND), params=_incident),
    ("POST", "/api/incidents/{incident_id}/shares"): Row(
        allow(200, COMMAND), params=_incident, body=lambda w, c: {"person_ids": [w.id("upper_observer")]}
    ),
    ("DELETE", "/api/incidents/{incident_id}/shares/{person_id}"): Row(
        allow(204, COMMAND), params=_incident_and_observer
    ),
    ("GET", "/api/incidents/{incident_id}/timeline"): Row(allow(200, READ_INCIDENTS), params=_incident),
    ("POST", "/api/incidents/{incident_id}/notes"): Row(
        allow(201, NOTES), params=_incident, body=lambda w, c: {"text": "Matrix note"}
    ),
    # Escalations (R6): the command room escalates; the command room and the recipients read them
    # (an upper-court observer those sent to it); only a recipient acknowledges receiving one.
    ("POST", "/api/incidents/{incident_id}/escalations"): Row(
        allow(201, MANAGE), params=_incident, body=lambda w, c: {"target": "leader_on_duty", "reason": "RBAC"}
    ),
    ("GET", "/api/incidents/{incident_id}/escalations"): Row(
        allow(200, MANAGE | {"upper_observer"}), params=_incident
    ),
    ("POST", "/api/incidents/{incident_id}/escalations/{escalation_id}/ack"): Row(
        allow(200, {"leader"}) | {role: 403 for role in MANAGE - {"leader"}} | {"upper_observer": 404},
        params=_escalation_to_the_leader,
    ),
    ("GET", "/api/escalations/received"): Row(allow(200, MANAGE | {"upper_observer"})),
    # An incident's streams: the command room, and an upper-court observer it is shared with.
    ("GET", "/api/incidents/{incident_id}/streams"): Row(
        allow(200, WATCH | {"upper_observer"}), params=_incident
    ),
    ("POST", "/api/incidents/{incident_id}/grants/view"): Row(
        allow(200, WATCH | {"upper_observer"}),
        params=_incident,
        body=lambda w, c: {"stream_ids": [w.stream_id]},
    ),
    # The archive (issue 4): the world's stream has no recording, so who may look gets a 404.
    ("GET", "/api/recordings"): Row(allow(200, WATCH)),
    ("POST", "/api/recordings/{stream_id}/ticket"): Row(allow(200, WATCH), params=_stream),
    ("GET", "/api/recordings/{stream_id}/play"): Row(allow(404, WATCH), params=_stream),
    ("POST", "/api/recordings/{stream_id}/verify"): Row(allow(404, WATCH), params=_stream),
    # Retention (R2): only an administrator may ask for a deletion (none recorded here: 404); holds are
    # placed and lifted by commanders, leaders and administrators, and seen by who may watch.
    ("DELETE", "/api/recordings/{stream_id}"): Row(
        allow(404, {"admin"}), params=_stream, body=lambda w, c: {"reason": "RBAC"}
    ),
    ("GET", "/api/recordings/{stream_id}/retention"): Row(allow(404, WATCH), params=_stream),
    ("GET", "/api/holds"): Row(allow(200, WATCH)),
    ("POST", "/api/holds"): Row(
        allow(201, COMMAND), body=lambda w, c: {"stream_id": w.stream_id, "reason": "RBAC hold"}
    ),
    ("POST", "/api/holds/{hold_id}/lift"): Row(
        allow(200, COMMAND), params=_hold, body=lambda w, c: {"reason": "RBAC lift"}
    ),
    ("POST", "/api/exports"): Row(allow(404, COMMAND), body=lambda w, c: {"stream_ids": [w.stream_id]}),
    ("GET", "/api/exports"): Row(allow(200, EVERYONE)),
    ("GET", "/api/exports/{export_id}"): Row(allow(404, EVERYONE), params=_no_export),
    ("POST", "/api/exports/{export_id}/ticket"): Row(allow(404, EVERYONE), params=_no_export),
    ("GET", "/api/exports/{export_id}/download"): Row(allow(404, COMMAND), params=_no_export),
    # Redacted copies: who may export may ask for one and download it; each sees their own.
    ("POST", "/api/redactions"): Row(allow(404, COMMAND), body=lambda w, c: {"stream_id": w.stream_id}),
    ("GET", "/api/redactions"): Row(allow(200, EVERYONE)),
    ("GET", "/api/redactions/{redaction_id}"): Row(
        allow(404, EVERYONE), params=lambda w: {"redaction_id": 999999}
    ),
    ("POST", "/api/redactions/{redaction_id}/ticket"): Row(
        allow(404, EVERYONE), params=lambda w: {"redaction_id": 999999}
    ),
    ("GET", "/api/redactions/{redaction_id}/download"): Row(
        allow(404, COMMAND), params=lambda w: {"redaction_id": 999999}
    ),
    ("GET", "/api/audit"): Row(allow(200, {"admin", "leader"})),
    ("GET", "/api/audit/verify"): Row(allow(200, {"admin", "leader"})),
    # Alerts (R8, R9): the command room sees and handles them; a field officer raises an SOS.
    ("GET", "/api/alerts"): Row(allow(200, WATCH)),
    ("GET", "/api/alerts/{alert_id}"): Row(allow(200, WATCH), params=_open_sos),
    ("POST", "/api/alerts/{alert_id}/acknowledge"): Row(
        allow(200, WATCH), params=_open_sos, body=lambda w, c: {"note": "on it"}
    ),
    ("POST", "/api/alerts/{alert_id}/resolve"): Row(
        allow(200, WATCH), params=_open_sos, body=lambda w, c: {"note": "dealt with"}
    ),
    ("POST", "/api/alerts/sos"): Row(allow(201, {"field_officer"}), body=_sos_with_none_open),
    # Field operations (R8): the command room and duty officers register them; officers see, start
    # and end their own (to one not on the team, another's is not there: see test_field_ops.py).
    ("POST", "/api/field-operations"): Row(allow(201, MANAGE), body=_field_operation_body),
    ("GET", "/api/field-operations"): Row(allow(200, FIELD_OPS)),
    ("GET", "/api/field-operations/{field_operation_id}"): Row(
        allow(200, FIELD_OPS), params=_field_operation
    ),
    ("POST", "/api/field-operations/{field_operation_id}/start"): Row(
        allow(200, FIELD_OPS), params=_field_operation
    ),
    ("POST", "/api/field-operations/{field_operation_id}/end"): Row(
        allow(200, FIELD_OPS), params=_running_field_operation, body=lambda w, c: {"note": "back"}
    ),
    # Positions (R9): officers report their own, the command room may enter one for someone and
    # reads them; observers and external participants neither report nor see any.
    ("POST", "/api/positions"): Row(allow(202, POSITIONS), body=_position),
    ("POST", "/api/positions/batch"): Row(
        allow(202, POSITIONS), body=lambda w, c: {"positions": [_position(w), _position(w)]}
    ),
    ("GET", "/api/positions/latest"): Row(allow(200, WATCH)),
    ("GET", "/api/people/{person_id}/track"): Row(
        allow(200, WATCH), params=lambda w: {"person_id": w.id("field_officer")}
    ),
    # Duty (R10): run by the command room (duty officers, commanders, leaders, admins); the roster
    # is planned by commanders, leaders and admins. Field officers are in the field, observers
    # and external participants outside the center: none of it is theirs.
    ("GET", "/api/duty/posts"): Row(allow(200, WATCH)),
    ("GET", "/api/duty/board"): Row(allow(200, WATCH)),
    ("GET", "/api/duty/shifts"): Row(allow(200, WATCH)),
    ("POST", "/api/duty/shifts"): Row(allow(201, COMMAND), body=_new_shift),
    ("GET", "/api/duty/shifts/{shift_id}"): Row(allow(200, WATCH), params=_shift),
    ("PATCH", "/api/duty/shifts/{shift_id}"): Row(
        allow(200, COMMAND), params=_shift, body=lambda w, c: {"note": "RBAC"}
    ),
    ("DELETE", "/api/duty/shifts/{shift_id}"): Row(allow(204, COMMAND), params=_shift),
    ("POST", "/api/duty/sign-in"): Row(allow(200, WATCH), body=lambda w, c: {"post": DESK}),
    ("POST", "/api/duty/sign-out"): Row(allow(200, WATCH), body=_signed_in_on_desk),
    ("GET", "/api/duty/sign-ins"): Row(allow(200, WATCH)),
    ("POST", "/api/duty/handovers"): Row(
        allow(201, WATCH), body=lambda w, c: _signed_in_on_desk(w, c) | {"notes": "RBAC"}
    ),
    ("GET", "/api/duty/handovers"): Row(allow(200, WATCH)),
    ("GET", "/api/duty/handovers/{handover_id}"): Row(allow(200, WATCH), params=_handover),
    ("POST", "/api/duty/handovers/{handover_id}/accept"): Row(allow(200, WATCH), params=_handover),
    ("GET", "/api/duty/items"): Row(allow(200, WATCH)),
    ("POST", "/api/duty/items/{item_id}/close"): Row(
        allow(200, WATCH), params=lambda w: _handover(w, item=True), body=lambda w, c: {"note": "done"}
    ),
    ("GET", "/api/duty/log"): Row(allow(200, WATCH)),
    ("POST", "/api/duty/log"): Row(allow(201, WATCH), body=lambda w, c: {"kind": "note", "text": "RBAC"}),
}


def _user_add(
    zhihui: ZhihuiProcess, username: str, role: str, password: str
) -> subprocess.CompletedProcess[str]:
    return run_zhihui(
        zhihui.workdir,
        *("user", "add", username, "--role", role, "--name", username.title()),
        input=f"{password}\n{password}\n",
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    relay_secret = {"ZHIHUI_RELAY_NODE__SECRET": secrets.token_urlsafe(24)}  # relays may report
    with running_zhihui(tmp_path_factory.mktemp("rbac"), **relay_secret) as zhihui:
        assert zhihui.admin_password is not None
        admin = ApiClient(zhihui.base_url, "admin", zhihui.admin_password)
        usernames = {role: f"{role.replace('_', '-')}-1" for role in ROLES}
        # One person made on the command line, the others by the admin over the API.
        added = _user_add(zhihui, usernames["duty_officer"], "duty_officer", PASSWORD)
        assert added.returncode == 0, added.stdout + added.stderr
        for role in ROLES:
            if role != "duty_officer":
                created = admin.http.post("/api/people", json=_account(usernames[role], role))
                assert created.status_code == 201, created.text
        people = {role: ApiClient(zhihui.base_url, usernames[role], PASSWORD) for role in ROLES}
        world = World(zhihui=zhihui, people=people)
        world.stream_id = (
            people["field_officer"].http.post("/api/grants/publish", json={}).json()["stream_id"]
        )
        yield world


def _account(username: str, role: str) -> dict[str, str]:
    return {"username": username, "display_name": username.title(), "role": role, "password": PASSWORD}


def test_every_endpoint_has_a_row_for_every_role(world: World) -> None:
    document = httpx.get(f"{world.zhihui.base_url}/api/openapi.json").json()
    routes = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert routes - set(MATRIX) == set(), "endpoints without a row in MATRIX: decide who may call them"
    assert set(MATRIX) - routes == set(), "rows for endpoints that no longer exist"
    assert all(set(row.expect) == set(COLUMNS) for row in MATRIX.values())


@pytest.mark.parametrize(("method", "path"), list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
def test_each_role_gets_the_expected_status(world: World, method: str, path: str) -> None:
    row = MATRIX[(method, path)]
    got = {}
    for column in COLUMNS:
        url = path.format(**row.params(world)) if "{" in path else path
        body = row.body(world, column) if row.body else None
        response = world.client(column).request(method, url, json=body)
        got[column] = response.status_code
        if response.status_code >= 400:
            assert "detail" in response.json(), response.text  # a clear message, never a stack trace
    assert got == row.expect


def test_user_add_refuses_bad_input_and_duplicates(world: World) -> None:
    duplicate = _user_add(world.zhihui, "duty-officer-1", "duty_officer", PASSWORD)
    assert duplicate.returncode == 1 and "taken" in duplicate.stdout
    assert _user_add(world.zhihui, "someone", "janitor", PASSWORD).returncode == 2
    short = _user_add(world.zhihui, "someone", "leader", "short")
    assert short.returncode == 1 and "8 characters" in short.stdout
    refused = world.people["admin"].http.post(
        "/api/people",
        json={"username": "Bad Name", "display_name": "x", "role": "leader", "password": PASSWORD},
    )
    assert refused.status_code == 422
    taken = world.people["admin"].http.post(
        "/api/people",
        json={"username": "duty-officer-1", "display_name": "x", "role": "leader", "password": PASSWORD},
    )
    assert taken.status_code == 409
