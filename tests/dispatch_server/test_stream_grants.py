"""R17: grants to publish a stream and to watch streams are audited (who, role, address, which
streams), committed before the grant is given out. Against ``zhihui up`` on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.conftest import ApiClient
from tests.dispatch_server.deployment import Deployment


def test_publish_and_view_grants_are_audited(deployment: Deployment) -> None:
    commander, officer1 = deployment.commander, deployment.officer1
    admin = ApiClient(deployment.base_url, "admin", str(deployment.zhihui.admin_password))
    published = officer1.http.post("/api/grants/publish", json={"device": "bodycam"})
    assert published.status_code == 200, published.text
    stream_id = published.json()["stream_id"]
    watched = commander.http.post("/api/grants/view", json={"stream_ids": [stream_id]})
    assert watched.status_code == 200, watched.text
    unknown = commander.http.post("/api/grants/view", json={"stream_ids": [stream_id, "no-such-stream"]})
    assert unknown.status_code == 404

    publishing = admin.http.get("/api/audit", params={"object": f"stream:{stream_id}"}).json()["items"]
    assert [(r["action"], r["actor_id"], r["role"], r["outcome"]) for r in publishing] == [
        ("stream.publish_grant", officer1.id, "field_officer", "success")
    ]
    assert publishing[0]["detail"]["device"] == "bodycam" and publishing[0]["source"] == "127.0.0.1"
    viewing = admin.http.get(
        "/api/audit", params={"action": "stream.view_grant", "actor_id": commander.id}
    ).json()["items"]
    mine = [r for r in viewing if stream_id in r["detail"]["streams"]]
    assert [(r["role"], r["object"], r["outcome"], r["detail"]["streams"]) for r in mine] == [
        ("commander", "streams", "success", [stream_id])
    ]
