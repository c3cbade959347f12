"""R4, R6: a directive target that has not acknowledged by its deadline is escalated to the
incident's commander, then, a setting later, to the leader on duty; exactly when the clock says
so, never before, never twice. The app runs in the test's process with a clock the test moves;
real SQLite and PostgreSQL. (Several processes: ``test_escalation_scale_out.py``.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatch_server.people.models import Role
from dispatch_server.scheduling.clock import ManualClock
from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.deployment import query
from tests.dispatch_server.inprocess import InProcess, in_process, until

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEADER_AFTER = 300.0


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def _incident_with_directive(zhihui: InProcess, deadline: int) -> tuple[int, int, dict[str, int]]:
    """An emergency run by ``chief``, with two officers; a directive from ``deputy`` to everyone on
    it. The incident id, the directive id and the people's ids."""
    chief = await zhihui.person("chief", Role.COMMANDER)
    deputy = await zhihui.person("deputy", Role.COMMANDER)
    leader = await zhihui.person("leader", Role.LEADER)
    officers = [await zhihui.person(name, Role.FIELD_OFFICER) for name in ("li", "zhao")]
    opened = await chief.http.post(
        "/api/incidents",
        json={"kind": "emergency", "title": "Crowd at the gate", "officer_ids": [o.id for o in officers]},
    )
    assert opened.status_code == 201, opened.text
    incident_id = opened.json()["id"]
    issued = await deputy.http.post(
        "/api/directives",
        json={"incident_id": incident_id, "text": "Report your position", "ack_deadline_seconds": deadline},
    )
    assert issued.status_code == 201, issued.text
    directive = issued.json()
    assert directive["incident_id"] == incident_id
    assert {t["person"]["id"] for t in directive["targets"]} == {o.id for o in officers}
    assert directive["deadline"] == _at(deadline)
    ids = {c.username: c.id for c in (chief, deputy, leader, *officers)}
    return incident_id, directive["id"], ids


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_missed_acknowledgement_escalates_to_the_commander_then_the_leader_on_time(
    backend: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock, leader_after_seconds=LEADER_AFTER) as zhihui:
            incident_id, directive_id, ids = await _incident_with_directive(zhihui, deadline=120)
            zhao = next(c for c in zhihui.clients if c.username == "zhao")
            await zhihui.advance(30)
            assert (await zhao.http.post(f"/api/directives/{directive_id}/ack")).status_code == 200

            await zhihui.advance(89)  # T0+119: one second before the deadline
            assert zhihui.escalations() == []
            await zhihui.advance(2)  # T0+121
            await until(lambda: len(zhihui.escalations()) == 1)
            first = zhihui.escalations()[0]
            assert first["escalation"]["level"] == "commander"
            assert first["escalation"]["person"]["id"] == ids["li"]  # zhao acknowledged in time
            assert first["escalation"]["to_person"]["id"] == ids["chief"]  # the incident's, not the issuer
            assert first["escalation"]["due_at"] == _at(120)
            assert first["escalation"]["fired_at"] == _at(121)
            assert first["escalation"]["incident_id"] == incident_id
            assert first["event_id"] is not None
            li_target = next(t for t in first["directive"]["targets"] if t["person"]["id"] == ids["li"])
            assert li_target["escalations"] == 1

            await zhihui.advance(LEADER_AFTER - 2)  # T0+419
            assert len(zhihui.escalations()) == 1
            await zhihui.advance(2)  # T0+421
            await until(lambda: len(zhihui.escalations()) == 2)
            second = zhihui.escalations()[1]["escalation"]
            assert (second["level"], second["to_person"]["id"]) == ("leader", ids["leader"])
            assert (second["due_at"], second["fired_at"]) == (_at(421), _at(421))

            await zhihui.advance(24 * 3600)  # nothing further to escalate to
            assert len(zhihui.escalations()) == 2

            chief = next(c for c in zhihui.clients if c.username == "chief")
            listed = (await chief.http.get("/api/escalations", params={"incident_id": incident_id})).json()
            assert [(e["level"], e["person"]["id"]) for e in listed] == [
                ("leader", ids["li"]),
                ("commander", ids["li"]),
            ]
            timeline = (await chief.http.get(f"/api/incidents/{incident_id}/timeline")).json()["items"]
            kinds = [entry["kind"] for entry in timeline]
            assert kinds == [
                "opened",
                "officer_assigned",
                "officer_assigned",
                "directive",
                "acknowledged",
                "escalation",
                "alert_raised",  # the ack_overdue alert, raised with the first escalation
                "escalation",
            ]
            assert [e["at"] for e in timeline][-4:] == [_at(30), _at(121), _at(121), _at(421)]
            assert timeline[-2]["subject"].startswith("alert:") and "Li has not" in timeline[-2]["summary"]
            assert "escalated to Leader" in timeline[-1]["summary"]

            # Each carries its package (R6): the directive as it stood, the target, the incident.
            package = first["escalation"]["package"]
            assert package["target"]["id"] == ids["li"]
            assert package["built_at"] == _at(121)
            assert package["incident"]["id"] == incident_id
            assert package["incident"]["commander"]["id"] == ids["chief"]
            assert package["incident"]["open_seconds"] == 121
            [directive] = package["directives"]
            assert directive["id"] == directive_id
            states = {t["person"]["id"]: (t["state"], t["overdue"]) for t in directive["targets"]}
            assert states == {ids["li"]: ("sent", True), ids["zhao"]: ("acknowledged", False)}
            assert (package["live"], package["alerts"], package["timeline"]) == ([], [], [])
            assert listed[0]["package"]["built_at"] == _at(421)  # stored: the list shows it too

        rows = await query(
            database_url,
            "SELECT e.level, e.person_id, ev.channel, ev.type FROM escalation e "
            "JOIN event ev ON ev.subject = :subject AND ev.type = 'escalation' "
            "ORDER BY e.id",
            subject=f"directive:{directive_id}",
        )
    assert len(rows) == 4  # two escalations, each logged once (the join pairs them up)
    assert {(level, channel) for level, _, channel, _ in rows} == {
        ("COMMANDER", "command"),
        ("LEADER", "command"),
    }


@pytest.mark.parametrize("backend", BACKENDS)
async def test_escalation_timers_survive_restarts(backend: str, tmp_path: Path) -> None:
    """The scheduler keeps nothing in memory: deadlines that pass while no process runs fire when
    one starts, each once."""
    clock = ManualClock(T0)
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock, leader_after_seconds=LEADER_AFTER) as zhihui:
            _incident_id, directive_id, ids = await _incident_with_directive(zhihui, deadline=60)

        await clock.advance(61)  # the deadline passes while the server is down
        async with in_process(database_url, tmp_path, clock, leader_after_seconds=LEADER_AFTER) as zhihui:
            await until(lambda: len(zhihui.escalations()) == 2)  # both officers, to the commander
            assert {m["escalation"]["level"] for m in zhihui.escalations()} == {"commander"}
            assert {m["escalation"]["fired_at"] for m in zhihui.escalations()} == {_at(61)}

        await clock.advance(LEADER_AFTER)  # and the second interval passes while it is down again
        async with in_process(database_url, tmp_path, clock, leader_after_seconds=LEADER_AFTER) as zhihui:
            await until(lambda: len(zhihui.escalations()) == 2)  # now to the leader
            assert {m["escalation"]["level"] for m in zhihui.escalations()} == {"leader"}
            await zhihui.advance(3600)
            assert len(zhihui.escalations()) == 2

        rows = await query(
            database_url,
            "SELECT person_id, level, to_person_id FROM escalation WHERE directive_id = :d "
            "ORDER BY level, person_id",
            d=directive_id,
        )
    assert rows == [
        (ids["li"], "COMMANDER", ids["chief"]),
        (ids["zhao"], "COMMANDER", ids["chief"]),
        (ids["li"], "LEADER", ids["leader"]),
        (ids["zhao"], "LEADER", ids["leader"]),
    ]
