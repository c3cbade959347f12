"""R17 (bad input is a clear 4xx, never a 500): an integer the API takes is bounded by what the
database holds. 2**64 in a path, a query or a body used to reach SQLite (OverflowError) or asyncpg
("value out of int64 range"), and on PostgreSQL anything above 2**31-1 ("value out of int32
range": ids are INTEGER columns), as a 500; it is a 422 that names the field. The OpenAPI document
shows that no integer a request carries is unbounded, so a new endpoint cannot bring it back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dispatch_server.app import create_app
from dispatch_server.people.models import Role
from dispatch_server.scheduling.clock import ManualClock
from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.inprocess import in_process, settings_for

HUGE = 2**64
"""Beyond any 64-bit integer."""
WIDE = 2**31
"""Beyond PostgreSQL's INTEGER, within BIGINT."""


def _integers(schema: dict[str, Any], components: dict[str, Any], where: str) -> Iterator[tuple[str, dict]]:
    """Every integer schema inside ``schema`` (following $refs), with where it is."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        yield from _integers(components[name], components, f"{where}<{name}>")
        return
    if schema.get("type") == "integer":
        yield where, schema
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            yield from _integers(option, components, where)
    if "items" in schema:
        yield from _integers(schema["items"], components, f"{where}[]")
    for name, prop in schema.get("properties", {}).items():
        yield from _integers(prop, components, f"{where}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _integers(schema["additionalProperties"], components, f"{where}{{}}")


def test_no_integer_a_request_carries_is_unbounded(tmp_path: Path) -> None:
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'zhihui.db'}", tmp_path)
    document = create_app(settings).openapi()
    components = document.get("components", {}).get("schemas", {})
    unbounded = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            found: list[tuple[str, dict]] = []
            for parameter in operation.get("parameters", []):
                found += _integers(parameter["schema"], components, f"{parameter['in']}:{parameter['name']}")
            for content in operation.get("requestBody", {}).get("content", {}).values():
                found += _integers(content["schema"], components, "body")
            unbounded += [f"{method.upper()} {path} {where}" for where, s in found if "maximum" not in s]
    assert unbounded == [], "integers without a maximum: use dispatch_server.ids.Id or Count"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_id_beyond_64_bits_is_a_clear_422_everywhere(backend: str, tmp_path: Path) -> None:
    with database_for(backend, tmp_path) as database_url:
        async with in_process(
            database_url, tmp_path, ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
        ) as zhihui:
            admin = await zhihui.person("root", Role.ADMIN)
            officer = await zhihui.person("li", Role.FIELD_OFFICER)
            calls: list[tuple[Any, str, str, dict[str, Any]]] = [
                (admin, "GET", f"/api/incidents/{HUGE}", {}),
                (admin, "GET", f"/api/incidents/{WIDE}/timeline", {}),
                (admin, "GET", "/api/incidents", {"params": {"officer_id": HUGE}}),
                (admin, "GET", "/api/incidents/1/timeline", {"params": {"after": WIDE}}),
                (
                    admin,
                    "POST",
                    f"/api/incidents/{HUGE}/escalations",
                    {"json": {"target": "upper_court", "reason": "x"}},
                ),
                (
                    admin,
                    "POST",
                    "/api/incidents/1/escalations",
                    {"json": {"target": "upper_court", "reason": "x", "observer_id": WIDE}},
                ),
                (
                    admin,
                    "POST",
                    "/api/incidents",
                    {"json": {"kind": "major", "title": "x", "officer_ids": [HUGE]}},
                ),
                (admin, "GET", "/api/alerts", {"params": {"incident_id": HUGE, "offset": HUGE}}),
                (admin, "GET", f"/api/alerts/{WIDE}", {}),
                (admin, "POST", "/api/directives", {"json": {"target_ids": [HUGE], "text": "x"}}),
                (admin, "GET", "/api/escalations", {"params": {"directive_id": WIDE}}),
                (admin, "PATCH", f"/api/people/{HUGE}", {"json": {"display_name": "x"}}),
                (admin, "GET", f"/api/people/{WIDE}/track", {}),
                (admin, "DELETE", f"/api/units/{HUGE}", {}),
                (admin, "POST", f"/api/holds/{WIDE}/lift", {"json": {"reason": "long enough"}}),
                (admin, "GET", "/api/audit", {"params": {"before_id": HUGE}}),
                (officer, "POST", f"/api/directives/{HUGE}/ack", {}),
                (officer, "POST", f"/api/field-operations/{WIDE}/start", {}),
            ]
            for client, method, url, extra in calls:
                response = await client.http.request(method, url, **extra)
                assert response.status_code == 422, (method, url, response.status_code, response.text)
                detail = response.json()["detail"]
                assert "less than or equal to" in detail, (url, detail)
            # The largest id there can be is only not found; a 64-bit event id is fine where events are.
            assert (await admin.http.get(f"/api/incidents/{WIDE - 1}")).status_code == 404
            assert (await admin.http.get("/api/audit", params={"before_id": WIDE})).status_code == 200
