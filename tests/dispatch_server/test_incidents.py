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


def test_every_change_to_an_incident_is_audited_and_so_are_refused_attempts(deployment: Deployment) -> None:
    """R17: opening, changing, closing, reopening, staffing, sharing an incident and its notes are
    each audited with who (person, role, address), which incident and how it ended; an attempt
    refused after sign-in is audited as denied (403, 404) or failed (422), and changes nothing."""
    commander, officer1, officer2 = deployment.commander, deployment.officer1, deployment.officer2
    admin = ApiClient(deployment.base_url, "admin", str(deployment.zhihui.admin_password))
    observer = _person(deployment, "upper_observer")
    refused = commander.http.post(
        "/api/incidents", json={"kind": "major", "title": "x", "officer_ids": [commander.id]}
    )
    assert refused.status_code == 422
    incident = _open(commander, kind="major", title="Eviction", place="Lane 4", officer_ids=[officer1.id])
    path = f"/api/incidents/{incident['id']}"
    calls = [
        (commander, "PATCH", path, {"title": "Eviction, day 2", "place": "Lane 4"}, 200),
        (officer1, "PATCH", path, {"title": "mine now"}, 403),
        (commander, "PATCH", path, {"status": "closed"}, 200),
        (commander, "PATCH", path, {"status": "open"}, 200),
        (commander, "PATCH", path, {"title": "Eviction, day 2"}, 200),  # no change: not audited
        (commander, "POST", f"{path}/officers", {"person_ids": [officer2.id]}, 200),
        (commander, "POST", f"{path}/officers", {"person_ids": [officer2.id]}, 200),  # on it already
        (commander, "POST", f"{path}/officers", {"person_ids": [commander.id]}, 422),
        (commander, "DELETE", f"{path}/officers/{officer2.id}", None, 200),
        (commander, "DELETE", f"{path}/officers/{officer2.id}", None, 404),
        (commander, "POST", f"{path}/shares", {"person_ids": [observer.id]}, 200),
        (commander, "DELETE", f"{path}/shares/{observer.id}", None, 204),
        (officer1, "POST", f"{path}/notes", {"text": "Locksmith here"}, 201),
        (officer2, "POST", f"{path}/notes", {"text": "not my incident"}, 404),
        (observer, "POST", f"{path}/notes", {"text": "read-only"}, 403),
    ]
    answers = []
    for client, method, url, body, status in calls:
        response = client.http.request(method, url, json=body)
        assert response.status_code == status, (method, url, response.text)
        answers.append(response.json() if response.content else None)
    note = answers[12]

    listed = admin.http.get("/api/audit", params={"limit": 500, "object": f"incident:{incident['id']}"})
    assert listed.status_code == 200, listed.text
    rows = sorted(listed.json()["items"], key=lambda row: row["id"])
    assert [(row["action"], row["actor_id"], row["role"], row["outcome"]) for row in rows] == [
        ("incident.open", commander.id, "commander", "success"),
        ("incident.update", commander.id, "commander", "success"),
        ("incident.update", officer1.id, "field_officer", "denied"),
        ("incident.close", commander.id, "commander", "success"),
        ("incident.reopen", commander.id, "commander", "success"),
        ("incident.assign", commander.id, "commander", "success"),
        ("incident.assign", commander.id, "commander", "failure"),
        ("incident.unassign", commander.id, "commander", "success"),
        ("incident.unassign", commander.id, "commander", "denied"),
        ("incident.share", commander.id, "commander", "success"),
        ("incident.unshare", commander.id, "commander", "success"),
        ("incident.note", officer1.id, "field_officer", "success"),
        ("incident.note", officer2.id, "field_officer", "denied"),
        ("incident.note", observer.id, "upper_observer", "denied"),
    ]
    assert all(row["source"] == "127.0.0.1" for row in rows)
    details = [row["detail"] for row in rows]
    assert details[0] == {
        "kind": "major",
        "title": "Eviction",
        "case_number": "",
        "place": "Lane 4",
        "commander_id": commander.id,
        "officer_ids": [officer1.id],
    }
    assert details[1] == {"title": "Eviction, day 2"}  # the place did not change
    assert details[3] == {"status": "closed"} and details[4] == {"status": "open"}
    assert details[5] == {"officer_ids": [officer2.id]}
    assert "only field officers" in details[6]["error"] and details[6]["officer_ids"] == [commander.id]
    assert details[7] == {"person_id": officer2.id} and details[8]["person_id"] == officer2.id
    assert details[9] == {"person_ids": [observer.id]} and details[10] == {"person_id": observer.id}
    assert details[11] == {"entry_id": note["id"]}
    assert details[2]["error"] == "a field_officer may not do this"

    opening = admin.http.get(
        "/api/audit", params={"action": "incident.open", "object": "incidents", "actor_id": commander.id}
    ).json()["items"]
    assert opening[0]["outcome"] == "failure" and "only field officers" in opening[0]["detail"]["error"]
    # The refused attempts changed nothing.
    entries = commander.http.get(f"{path}/timeline").json()["items"]
    timeline = [(e["kind"], (e["actor"] or {}).get("id")) for e in entries]
    assert ("note", officer2.id) not in timeline and ("updated", officer1.id) not in timeline
    assert admin.http.get("/api/audit/verify").json()["ok"] is True
