"""R5: incidents with their officers, directives to everyone on them, and a timeline of
everything that happened; per-incident access (R17). Against ``zhihui up`` on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from tests.conftest import ApiClient
from tests.dispatch_server.deployment import Deployment
from tests.media import publishing


def _person(deployment: Deployment, role: str) -> ApiClient:
    """A new person of this role, created by the admin, signed in."""
    admin = ApiClient(deployment.base_url, "admin", str(deployment.zhihui.admin_password))
    username = f"{role.replace('_', '')}-{secrets.token_hex(3)}"
    created = admin.http.post(
        "/api/people",
        json={"username": username, "display_name": username, "role": role, "password": "a-long-password"},
    )
    assert created.status_code == 201, created.text
    return ApiClient(deployment.base_url, username, "a-long-password")


def _open(commander: ApiClient, **body: Any) -> dict[str, Any]:
    response = commander.http.post("/api/incidents", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_incidents_are_filtered_and_paged_and_each_role_sees_only_its_own(deployment: Deployment) -> None:
    commander, officer1, officer2 = deployment.commander, deployment.officer1, deployment.officer2
    observer, outsider = _person(deployment, "upper_observer"), _person(deployment, "external")
    case = f"(2026)京0105执{secrets.randbelow(10**6)}号"
    tag = secrets.token_hex(4)
    major = _open(
        commander, kind="major", title=f"Seizure {tag}", case_number=case, officer_ids=[officer1.id]
    )
    sensitive = _open(commander, kind="sensitive", title=f"Hearing {tag}", officer_ids=[officer2.id])
    group = _open(commander, kind="group", title=f"Crowd {tag}", place="North gate")
    assert major["commander"]["id"] == commander.id and major["status"] == "open"
    assert [o["id"] for o in major["officers"]] == [officer1.id]

    def listed(client: ApiClient, **params: Any) -> dict[str, Any]:
        response = client.http.get("/api/incidents", params=params)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    ids = [group["id"], sensitive["id"], major["id"]]  # newest first
    assert [i["id"] for i in listed(commander, q=tag)["items"]] == ids
    assert [i["id"] for i in listed(commander, case_number=case)["items"]] == [major["id"]]
    assert [i["id"] for i in listed(commander, q=tag, kind="group")["items"]] == [group["id"]]
    assert [i["id"] for i in listed(commander, q="north gate")["items"]][:1] == [group["id"]]
    first, second = listed(commander, q=tag, limit=2), listed(commander, q=tag, limit=2, offset=2)
    assert (first["total"], [i["id"] for i in first["items"] + second["items"]]) == (3, ids)
    assert commander.http.get("/api/incidents", params={"limit": 0}).status_code == 422

    # A field officer sees the incidents it is on; another's is, to it, not there.
    assert [i["id"] for i in listed(officer1, q=tag)["items"]] == [major["id"]]
    assert officer1.http.get(f"/api/incidents/{sensitive['id']}").status_code == 404
    assert officer1.http.get(f"/api/incidents/{sensitive['id']}/timeline").status_code == 404
    assert officer1.http.patch(f"/api/incidents/{major['id']}", json={"title": "x"}).status_code == 403
    # An upper-court observer sees only what is shared with it, read-only.
    assert listed(observer)["items"] == []
    assert observer.http.get(f"/api/incidents/{major['id']}").status_code == 404
    shared = commander.http.post(f"/api/incidents/{major['id']}/shares", json={"person_ids": [observer.id]})
    assert [p["id"] for p in shared.json()] == [observer.id]
    assert [i["id"] for i in listed(observer)["items"]] == [major["id"]]
    assert observer.http.get(f"/api/incidents/{major['id']}/timeline").status_code == 200
    assert observer.http.post(f"/api/incidents/{major['id']}/notes", json={"text": "hi"}).status_code == 403
    wrong = commander.http.post(f"/api/incidents/{major['id']}/shares", json={"person_ids": [officer1.id]})
    assert wrong.status_code == 422 and "upper-court observers" in wrong.json()["detail"]
    assert commander.http.delete(f"/api/incidents/{major['id']}/shares/{observer.id}").status_code == 204
    assert listed(observer)["items"] == []
    # An external participant sees no incidents at all.
    assert outsider.http.get("/api/incidents").status_code == 403
    # Bad input.
    assert commander.http.post("/api/incidents", json={"kind": "riot", "title": "x"}).status_code == 422
    unknown = commander.http.post(
        "/api/incidents", json={"kind": "major", "title": "x", "officer_ids": [10**6]}
    )
    assert unknown.status_code == 404
    not_officer = commander.http.post(
        "/api/incidents", json={"kind": "major", "title": "x", "officer_ids": [commander.id]}
    )
    assert not_officer.status_code == 422
    assert commander.http.get("/api/incidents/999999").status_code == 404


async def test_a_directive_to_everyone_on_an_incident_and_the_incidents_timeline(
    deployment: Deployment,
) -> None:
    commander, officer1, officer2 = deployment.commander, deployment.officer1, deployment.officer2
    incident = _open(commander, kind="emergency", title="Standoff", officer_ids=[officer1.id])
    path = f"/api/incidents/{incident['id']}"
    assert commander.http.post(f"{path}/officers", json={"person_ids": [officer2.id]}).status_code == 200

    issued = commander.http.post("/api/directives", json={"incident_id": incident["id"], "text": "Fall back"})
    assert issued.status_code == 201, issued.text
    directive = issued.json()
    assert directive["incident_id"] == incident["id"]
    assert sorted(t["person"]["id"] for t in directive["targets"]) == sorted([officer1.id, officer2.id])
    assert officer1.http.post(f"/api/directives/{directive['id']}/ack").status_code == 200
    assert officer2.http.post(f"/api/directives/{directive['id']}/ack").status_code == 200
    listed = officer1.http.get("/api/directives", params={"incident_id": incident["id"]}).json()
    assert [d["id"] for d in listed] == [directive["id"]]
    note = officer1.http.post(f"{path}/notes", json={"text": "Crowd dispersing"})
    assert note.status_code == 201 and note.json()["actor"]["id"] == officer1.id

    async with publishing(deployment.zhihui, "officer1", audio=False) as live:
        await _until(lambda: "stream_up" in _kinds(commander, path))
    await _until(lambda: "stream_down" in _kinds(commander, path))

    assert commander.http.delete(f"{path}/officers/{officer2.id}").status_code == 200
    closed = commander.http.patch(path, json={"status": "closed", "case_number": "(2026)执9号"})
    assert closed.json()["status"] == "closed" and closed.json()["closed_at"]
    refused = commander.http.post("/api/directives", json={"incident_id": incident["id"], "text": "Late"})
    assert refused.status_code == 409
    assert commander.http.post("/api/directives", json={"incident_id": 10**6, "text": "x"}).status_code == 404
    assert commander.http.post("/api/directives", json={"text": "to nobody"}).status_code == 422
    empty = _open(commander, kind="routine", title="Nobody on it")
    nobody = commander.http.post("/api/directives", json={"incident_id": empty["id"], "text": "x"})
    assert nobody.status_code == 422 and "no officers" in nobody.json()["detail"]

    timeline = commander.http.get(f"{path}/timeline").json()
    entries = timeline["items"]
    assert timeline["next_after"] is None
    assert [e["kind"] for e in entries] == [
        "opened",
        "officer_assigned",
        "officer_assigned",
        "directive",
        "acknowledged",
        "acknowledged",
        "note",
        "stream_up",
        "stream_down",
        "officer_removed",
        "updated",
        "closed",
    ]
    assert entries[3]["directive_id"] == directive["id"] and entries[3]["actor"]["id"] == commander.id
    assert {e["person"]["id"] for e in entries[4:6]} == {officer1.id, officer2.id}
    assert entries[7]["stream_id"] == live.stream_id and entries[7]["person"]["id"] == officer1.id
    page = commander.http.get(f"{path}/timeline", params={"limit": 5}).json()
    rest = commander.http.get(f"{path}/timeline", params={"after": page["next_after"]}).json()
    assert [e["id"] for e in page["items"] + rest["items"]] == [e["id"] for e in entries]


def _kinds(client: ApiClient, path: str) -> list[str]:
    return [e["kind"] for e in client.http.get(f"{path}/timeline").json()["items"]]


async def _until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
