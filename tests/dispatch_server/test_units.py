"""R15: units in a tree, the people in them and the devices issued to them, kept by admins and
read by the command room; filters, pages, clear 4xx for bad input; every change audited. Against
``zhihui up`` on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from typing import Any

from tests.conftest import ApiClient
from tests.dispatch_server.deployment import Deployment

PASSWORD = "a-long-password"


def _admin(deployment: Deployment) -> ApiClient:
    return ApiClient(deployment.base_url, "admin", str(deployment.zhihui.admin_password))


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _officer(admin: ApiClient, unit_id: int | None) -> dict[str, Any]:
    username = f"unit-{secrets.token_hex(3)}"
    body = {"username": username, "display_name": username, "role": "field_officer", "password": PASSWORD}
    return _created(admin.http.post("/api/people", json=body | {"unit_id": unit_id}))


async def test_units_form_a_tree_with_their_people(deployment: Deployment) -> None:
    admin, commander = _admin(deployment), deployment.commander
    tag = secrets.token_hex(3)
    bureau = _created(admin.http.post("/api/units", json={"name": f"Enforcement bureau {tag} 执行局"}))
    squad1 = _created(
        admin.http.post("/api/units", json={"name": f"Squad one {tag}", "parent_id": bureau["id"]})
    )
    squad2 = _created(
        admin.http.post("/api/units", json={"name": f"Squad two {tag}", "parent_id": bureau["id"]})
    )
    assert squad1["parent_id"] == bureau["id"] and squad1["members"] == 0

    li, zhao = _officer(admin, squad1["id"]), _officer(admin, squad2["id"])
    wang = _officer(admin, None)
    moved = admin.http.patch(f"/api/people/{wang['id']}", json={"unit_id": squad1["id"]})
    assert moved.status_code == 200 and moved.json()["unit_id"] == squad1["id"]

    # The command room reads; people of a unit include its sub-units'.
    in_bureau = commander.http.get("/api/people", params={"unit_id": bureau["id"]}).json()
    assert {p["id"] for p in in_bureau} == {li["id"], zhao["id"], wang["id"]}
    in_squad1 = commander.http.get("/api/people", params={"unit_id": squad1["id"]}).json()
    assert {p["id"] for p in in_squad1} == {li["id"], wang["id"]}
    assert all(p["unit_id"] == squad1["id"] for p in in_squad1)
    assert commander.http.get(f"/api/units/{squad1['id']}").json()["members"] == 2

    children = commander.http.get("/api/units", params={"parent_id": bureau["id"]}).json()
    assert [u["name"] for u in children["items"]] == [f"Squad one {tag}", f"Squad two {tag}"]
    assert children["total"] == 2
    page = commander.http.get("/api/units", params={"q": tag, "limit": 2, "offset": 0}).json()
    rest = commander.http.get("/api/units", params={"q": tag, "limit": 2, "offset": 2}).json()
    assert page["total"] == rest["total"] == 3 and len(page["items"]) == 2 and len(rest["items"]) == 1
    top = commander.http.get("/api/units", params={"top_level": True, "q": tag}).json()
    assert [u["id"] for u in top["items"]] == [bureau["id"]]

    # Only admins change them.
    assert commander.http.post("/api/units", json={"name": "Mine"}).status_code == 403
    assert commander.http.patch(f"/api/units/{squad1['id']}", json={"name": "x"}).status_code == 403

    renamed = admin.http.patch(f"/api/units/{squad2['id']}", json={"name": f"Squad 2 {tag}"})
    assert renamed.status_code == 200 and renamed.json()["name"] == f"Squad 2 {tag}"
    top_level = admin.http.patch(f"/api/units/{squad2['id']}", json={"parent_id": None})
    assert top_level.status_code == 200 and top_level.json()["parent_id"] is None

    audited = await deployment.sql(
        "SELECT action, object FROM audit_event WHERE object IN (:a, :b) ORDER BY id",
        a=f"unit:{squad2['id']}",
        b=f"person:{wang['id']}",
    )
    assert audited == [
        ("units.create", f"unit:{squad2['id']}"),
        ("people.create", f"person:{wang['id']}"),
        ("people.update", f"person:{wang['id']}"),
        ("units.update", f"unit:{squad2['id']}"),
        ("units.update", f"unit:{squad2['id']}"),
    ]


def test_units_refuse_bad_changes_with_a_clear_4xx(deployment: Deployment) -> None:
    admin = _admin(deployment)
    tag = secrets.token_hex(3)
    parent = _created(admin.http.post("/api/units", json={"name": f"Parent {tag}"}))
    child = _created(admin.http.post("/api/units", json={"name": f"Child {tag}", "parent_id": parent["id"]}))

    def refused(response: Any, status: int, words: str) -> None:
        assert response.status_code == status, response.text
        assert words in response.json()["detail"]

    refused(admin.http.post("/api/units", json={"name": f"parent {tag}"}), 409, "already a unit")
    refused(admin.http.post("/api/units", json={"name": "x", "parent_id": 10**6}), 404, "no unit")
    refused(admin.http.post("/api/units", json={"name": ""}), 422, "name")
    refused(admin.http.post("/api/units", json={"name": "x", "colour": "red"}), 422, "colour")
    refused(admin.http.patch(f"/api/units/{parent['id']}", json={"parent_id": child["id"]}), 422, "sub-units")
    refused(
        admin.http.patch(f"/api/units/{parent['id']}", json={"parent_id": parent["id"]}), 422, "its parent"
    )
    refused(admin.http.get("/api/units/999999"), 404, "no unit 999999")
    refused(admin.http.get("/api/units", params={"limit": 0}), 422, "limit")
    refused(admin.http.get("/api/people", params={"unit_id": 10**6}), 404, "no unit")
    body = {"username": f"u-{tag}", "display_name": "x", "role": "field_officer", "password": PASSWORD}
    refused(admin.http.post("/api/people", json=body | {"unit_id": 10**6}), 404, "no unit")
    refused(admin.http.patch("/api/people/999999", json={"unit_id": None}), 404, "no person")

    # A unit is removed only when nothing refers to it.
    refused(admin.http.delete(f"/api/units/{parent['id']}"), 409, "sub-units")
    member = _officer(admin, child["id"])
    refused(admin.http.delete(f"/api/units/{child['id']}"), 409, "people")
    assert admin.http.patch(f"/api/people/{member['id']}", json={"unit_id": None}).status_code == 200
    assert admin.http.delete(f"/api/units/{child['id']}").status_code == 204
    assert admin.http.delete(f"/api/units/{parent['id']}").status_code == 204
    assert admin.http.get(f"/api/units/{parent['id']}").status_code == 404


async def test_devices_are_registered_issued_and_listed(deployment: Deployment) -> None:
    admin, commander = _admin(deployment), deployment.commander
    tag = secrets.token_hex(3).upper()
    unit = _created(admin.http.post("/api/units", json={"name": f"Device squad {tag}"}))
    holder = _officer(admin, unit["id"])
    other = _officer(admin, None)
    cam = _created(
        admin.http.post(
            "/api/devices",
            json={
                "kind": "bodycam",
                "serial": f"BC-{tag}-1",
                "label": "Bodycam 07",
                "person_id": holder["id"],
            },
        )
    )
    assert cam["person"]["id"] == holder["id"] and cam["status"] == "in_service"
    phone = _created(admin.http.post("/api/devices", json={"kind": "phone", "serial": f"PH-{tag}-1"}))
    radio = _created(
        admin.http.post(
            "/api/devices", json={"kind": "radio", "serial": f"RD-{tag}-1", "person_id": other["id"]}
        )
    )
    assert phone["person"] is None

    def listed(**params: Any) -> list[int]:
        response = commander.http.get("/api/devices", params={"q": tag} | params)
        assert response.status_code == 200, response.text
        return [d["id"] for d in response.json()["items"]]

    assert sorted(listed()) == sorted([cam["id"], phone["id"], radio["id"]])
    assert listed(kind="bodycam") == [cam["id"]]
    assert listed(person_id=holder["id"]) == [cam["id"]]
    assert listed(unit_id=unit["id"]) == [cam["id"]]
    assert sorted(listed(issued=True)) == sorted([cam["id"], radio["id"]])
    assert listed(issued=False) == [phone["id"]]
    first = commander.http.get("/api/devices", params={"q": tag, "limit": 2}).json()
    second = commander.http.get("/api/devices", params={"q": tag, "limit": 2, "offset": 2}).json()
    assert first["total"] == 3 and len(first["items"]) == 2 and len(second["items"]) == 1
    assert {d["id"] for d in first["items"] + second["items"]} == {cam["id"], phone["id"], radio["id"]}

    # Issue the phone, send the camera for repair, take the radio back.
    issued = admin.http.patch(f"/api/devices/{phone['id']}", json={"person_id": holder["id"]})
    assert issued.status_code == 200 and issued.json()["person"]["id"] == holder["id"]
    repair = admin.http.patch(f"/api/devices/{cam['id']}", json={"status": "in_repair"})
    assert repair.json()["status"] == "in_repair" and repair.json()["updated_at"] >= cam["updated_at"]
    back = admin.http.patch(f"/api/devices/{radio['id']}", json={"person_id": None})
    assert back.json()["person"] is None
    assert listed(status="in_repair") == [cam["id"]]
    assert sorted(listed(person_id=holder["id"])) == sorted([cam["id"], phone["id"]])
    assert commander.http.get(f"/api/devices/{radio['id']}").json()["serial"] == f"RD-{tag}-1"

    def refused(response: Any, status: int, words: str) -> None:
        assert response.status_code == status, response.text
        assert words in response.json()["detail"]

    refused(admin.http.post("/api/devices", json={"kind": "phone", "serial": f"ph-{tag}-1"}), 409, "serial")
    refused(admin.http.post("/api/devices", json={"kind": "pager", "serial": "P-1"}), 422, "kind")
    refused(admin.http.post("/api/devices", json={"kind": "phone", "serial": "bad serial!"}), 422, "serial")
    refused(
        admin.http.post("/api/devices", json={"kind": "phone", "serial": f"X-{tag}", "person_id": 10**6}),
        404,
        "no person",
    )
    refused(admin.http.patch(f"/api/devices/{cam['id']}", json={"serial": f"PH-{tag}-1"}), 409, "serial")
    refused(admin.http.patch(f"/api/devices/{cam['id']}", json={"status": "melted"}), 422, "status")
    refused(commander.http.get("/api/devices", params={"unit_id": 10**6}), 404, "no unit")
    refused(commander.http.get("/api/devices/999999"), 404, "no device")
    assert commander.http.post("/api/devices", json={"kind": "phone", "serial": "C-1"}).status_code == 403
    assert deployment.officer1.http.get("/api/devices").status_code == 403

    assert admin.http.delete(f"/api/devices/{radio['id']}").status_code == 204
    assert admin.http.get(f"/api/devices/{radio['id']}").status_code == 404
    audited = await deployment.sql(
        "SELECT action FROM audit_event WHERE object = :o ORDER BY id", o=f"device:{radio['id']}"
    )
    assert audited == [("devices.create",), ("devices.update",), ("devices.delete",)]
