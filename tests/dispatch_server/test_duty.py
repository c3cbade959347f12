"""R10 duty (值班制度): the roster, sign-in, handover, the duty log, the empty seat during working
hours, and (R4, R6) second-level escalations to the leader on duty. The app runs in the test's
process on a clock the test moves; real SQLite and PostgreSQL. Working hours are the defaults:
Asia/Shanghai (UTC+8), Monday to Friday 08:30-12:00 and 14:00-17:30."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from dispatch_server.duty import calendar
from dispatch_server.people.models import Role
from dispatch_server.scheduling.clock import ManualClock
from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.deployment import query
from tests.dispatch_server.inprocess import InProcess, in_process, until
from zhihui.settings import DutySettings

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY = (2026, 3, 2)
SATURDAY = (2026, 3, 7)
GRACE = 300  # duty.empty_seat_grace_seconds, default
DESK = "command-desk"
LEADER_POST = "leader-on-duty"


def local(hour: int, minute: int = 0, day: tuple[int, int, int] = MONDAY) -> datetime:
    """A moment of the court's local day, in UTC."""
    return datetime(*day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def move_to(zhihui: InProcess, moment: datetime) -> None:
    """Move the clock to ``moment``; wait until the escalation scheduler and the alert rules have
    run at that time (when anything of theirs fell due)."""
    seconds = (moment - zhihui.clock.now()).total_seconds()
    now = await zhihui.clock.advance(seconds)
    rules = zhihui.app.state.rules
    await until(lambda: (idle := zhihui.scheduler.idle_until) is not None and idle > now)
    await until(lambda: (idle := rules.idle_until) is not None and idle > now)


def alerts_of(zhihui: InProcess, subject: str) -> list[dict[str, Any]]:
    """The alert and alert_update messages the command room got about ``subject``, in order."""
    return [
        m.model_dump(mode="json")["alert"]
        for m in zhihui.commands
        if m.type in ("alert", "alert_update") and m.alert.subject == subject  # type: ignore[union-attr]
    ]


async def shift(
    planner: httpx.AsyncClient, person_id: int, post: str, start: datetime, end: datetime
) -> httpx.Response:
    return await planner.post(
        "/api/duty/shifts",
        json={"person_id": person_id, "post": post, "starts_at": iso(start), "ends_at": iso(end)},
    )


def test_working_hours_follow_the_court_zone_holidays_and_make_up_days() -> None:
    """R10: working hours are local (UTC+8 here), not at lunch or weekends; a holiday has none, a
    make-up Sunday (调休) has them; days and weeks are local days."""
    settings = DutySettings(holidays=["2026-03-03"], extra_working_days=["2026-03-08"])
    period = calendar.period_at(settings, local(8, 30))
    assert period is not None and (period.starts_at, period.ends_at) == (local(8, 30), local(12))
    assert calendar.period_at(settings, local(8, 29)) is None
    assert calendar.period_at(settings, local(12)) is None  # lunch
    assert calendar.period_at(settings, local(17, 29)) is not None
    assert calendar.period_at(settings, local(10, day=(2026, 3, 3))) is None  # the holiday
    assert calendar.period_at(settings, local(10, day=SATURDAY)) is None
    assert calendar.period_at(settings, local(10, day=(2026, 3, 8))) is not None  # a make-up Sunday
    assert calendar.day_bounds(settings, calendar.local_day(settings, local(0, 30))) == (
        local(0),
        local(0) + timedelta(days=1),
    )
    assert calendar.week_bounds(settings, datetime(2026, 3, 4).date()) == (
        local(0),
        local(0, day=(2026, 3, 9)),
    )
    with pytest.raises(ValueError, match="unknown time zone"):
        DutySettings(time_zone="Mars/Olympus")
    with pytest.raises(ValueError, match="overlap"):
        DutySettings(working_hours=[{"start": "08:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}])


@pytest.mark.parametrize("backend", BACKENDS)
async def test_roster_refuses_overlaps_and_changes_only_shifts_to_come(backend: str, tmp_path: Path) -> None:
    """R10: shifts of one person on one post may not overlap (409, saying with which); other
    mistakes get a clear 4xx; only commanders, leaders and admins plan; started shifts stay."""
    clock = ManualClock(local(7))
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            chief = await zhihui.person("chief", Role.COMMANDER)
            wu = await zhihui.person("wu", Role.DUTY_OFFICER)
            xu = await zhihui.person("xu", Role.DUTY_OFFICER)
            li = await zhihui.person("li", Role.FIELD_OFFICER)

            morning = await shift(chief.http, wu.id, DESK, local(8, 30), local(12, 30))
            assert morning.status_code == 201, morning.text
            assert (morning.json()["person"]["id"], morning.json()["starts_at"]) == (wu.id, iso(local(8, 30)))
            clash = await shift(chief.http, wu.id, DESK, local(12), local(14))
            assert clash.status_code == 409
            assert (
                "overlap" in clash.json()["detail"]
                and f"shift {morning.json()['id']}" in clash.json()["detail"]
            )
            afternoon = await shift(chief.http, wu.id, DESK, local(12, 30), local(17, 30))  # touching is fine
            assert afternoon.status_code == 201, afternoon.text
            beside = await shift(chief.http, xu.id, DESK, local(8, 30), local(17, 30))  # two on one post
            assert beside.status_code == 201, beside.text

            refused = {
                "leaders only": (
                    await shift(chief.http, wu.id, LEADER_POST, local(18), local(20))
                ).status_code,
                "field officer": (await shift(chief.http, li.id, DESK, local(18), local(20))).status_code,
                "backwards": (await shift(chief.http, wu.id, DESK, local(20), local(18))).status_code,
                "past": (await shift(chief.http, wu.id, DESK, local(6), local(7, 30))).status_code,
                "no such post": (await shift(chief.http, wu.id, "canteen", local(18), local(20))).status_code,
                "no such person": (await shift(chief.http, 99999, DESK, local(18), local(20))).status_code,
                "duty officer plans": (await shift(wu.http, wu.id, DESK, local(18), local(20))).status_code,
            }
            assert refused == {
                "leaders only": 403,
                "field officer": 403,
                "backwards": 422,
                "past": 422,
                "no such post": 422,
                "no such person": 404,
                "duty officer plans": 403,
            }
            naive = await chief.http.post(
                "/api/duty/shifts",
                json={
                    "person_id": wu.id,
                    "post": DESK,
                    "starts_at": "2026-03-03T08:30",
                    "ends_at": "2026-03-03T12:00",
                },
            )
            assert naive.status_code == 422 and "detail" in naive.json()

            day = (await wu.http.get("/api/duty/shifts", params={"day": "2026-03-02"})).json()
            assert day["total"] == 3
            assert [s["starts_at"] for s in day["items"]] == [iso(local(8, 30))] * 2 + [iso(local(12, 30))]
            mine = (
                await wu.http.get("/api/duty/shifts", params={"week": "2026-03-04", "person_id": wu.id})
            ).json()
            assert mine["total"] == 2
            assert (await wu.http.get("/api/duty/shifts", params={"day": "2026-03-03"})).json()["total"] == 0
            assert (await wu.http.get("/api/duty/shifts", params={"post": LEADER_POST})).json()["total"] == 0

            moved = await chief.http.patch(
                f"/api/duty/shifts/{afternoon.json()['id']}", json={"starts_at": iso(local(12))}
            )
            assert moved.status_code == 409
            noted = await chief.http.patch(
                f"/api/duty/shifts/{afternoon.json()['id']}", json={"note": "swap"}
            )
            assert noted.status_code == 200 and noted.json()["note"] == "swap"

            await move_to(zhihui, local(9))  # the morning shift has begun
            started = f"/api/duty/shifts/{morning.json()['id']}"
            assert (await chief.http.patch(started, json={"note": "late"})).status_code == 409
            assert (await chief.http.delete(started)).status_code == 409
            assert (await chief.http.delete(f"/api/duty/shifts/{afternoon.json()['id']}")).status_code == 204
            assert (await chief.http.get(f"/api/duty/shifts/{afternoon.json()['id']}")).status_code == 404

        audited = await query(
            database_url, "SELECT action FROM audit_event WHERE action LIKE 'duty.shift%' ORDER BY id"
        )
    assert [a for (a,) in audited] == ["duty.shift_create"] * 3 + ["duty.shift_change", "duty.shift_delete"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sign_in_marks_late_and_unscheduled_and_is_idempotent(backend: str, tmp_path: Path) -> None:
    """R10 值班签到: a sign-in more than duty.late_after_seconds after the shift starts is late; one
    without a shift is kept and marked; signing in or out twice changes nothing."""
    clock = ManualClock(local(7))
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            chief = await zhihui.person("chief", Role.COMMANDER)
            wu = await zhihui.person("wu", Role.DUTY_OFFICER)
            xu = await zhihui.person("xu", Role.DUTY_OFFICER)
            zhou = await zhihui.person("zhou", Role.DUTY_OFFICER)
            assert (await shift(chief.http, wu.id, DESK, local(8, 30), local(12))).status_code == 201
            assert (await shift(chief.http, zhou.id, DESK, local(14), local(17, 30))).status_code == 201

            await move_to(zhihui, local(8, 40))  # ten minutes late
            first = await wu.http.post("/api/duty/sign-in")  # the post of the current shift
            assert first.status_code == 200, first.text
            signed = first.json()
            assert (signed["post"], signed["late"], signed["late_seconds"], signed["unscheduled"]) == (
                DESK,
                True,
                600,
                False,
            )
            again = await wu.http.post("/api/duty/sign-in", json={"post": DESK})
            assert again.json() == signed

            assert (await xu.http.post("/api/duty/sign-in")).status_code == 422  # no shift: which post?
            walk_in = (await xu.http.post("/api/duty/sign-in", json={"post": DESK})).json()
            assert (walk_in["unscheduled"], walk_in["late"], walk_in["shift_id"]) == (True, False, None)
            assert (await xu.http.post("/api/duty/sign-in", json={"post": LEADER_POST})).status_code == 403

            await move_to(zhihui, local(11))
            out = (await wu.http.post("/api/duty/sign-out")).json()
            assert (out["signed_out_at"], out["left_early"]) == (iso(local(11)), True)
            assert (await wu.http.post("/api/duty/sign-out")).json() == out
            assert (await zhou.http.post("/api/duty/sign-out")).status_code == 409  # never signed in

            await move_to(zhihui, local(13, 50))  # ten minutes early counts for the 14:00 shift
            early = (await zhou.http.post("/api/duty/sign-in")).json()
            assert (early["late"], early["late_seconds"], early["unscheduled"]) == (False, 0, False)

            present = (await chief.http.get("/api/duty/sign-ins", params={"open": True})).json()
            assert sorted(s["person"]["username"] for s in present) == ["xu", "zhou"]
            board = (await chief.http.get("/api/duty/board")).json()
            desk = next(p for p in board["posts"] if p["key"] == DESK)
            assert (board["day"], board["working_now"]) == ("2026-03-02", False)  # lunch
            assert [s["person"]["username"] for s in desk["signed_in"]] == ["xu", "zhou"]
            assert desk["holder"]["username"] == "xu"

        audited = await query(
            database_url,
            "SELECT action, detail FROM audit_event WHERE action LIKE 'duty.sign%' ORDER BY id",
        )
    assert [a for a, _ in audited] == ["duty.sign_in", "duty.sign_in", "duty.sign_out", "duty.sign_in"]
    assert '"late":true' in audited[0][1] and '"unscheduled":true' in audited[1][1]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_handover_carries_open_items_forward_until_closed(backend: str, tmp_path: Path) -> None:
    """R10 交接班: the outgoing person's notes and open items, accepted by the incoming person; items
    still open pass to the next handover, closed ones do not."""
    clock = ManualClock(local(8))
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            chief = await zhihui.person("chief", Role.COMMANDER)
            wu = await zhihui.person("wu", Role.DUTY_OFFICER)
            xu = await zhihui.person("xu", Role.DUTY_OFFICER)
            zhou = await zhihui.person("zhou", Role.DUTY_OFFICER)
            incident = await chief.http.post(
                "/api/incidents", json={"kind": "group", "title": "Crowd at gate"}
            )
            incident_id = incident.json()["id"]

            written = {
                "post": DESK,
                "notes": "Quiet morning; the gate crowd is still being watched.",
                "to_person_id": xu.id,
                "items": [
                    {"text": "Watch the gate crowd", "incident_id": incident_id},
                    {"text": "Call the bank"},
                ],
            }
            assert (await wu.http.post("/api/duty/handovers", json=written)).status_code == 409  # not on duty
            await wu.http.post("/api/duty/sign-in", json={"post": DESK})
            wrong_link = written | {"items": [{"text": "?", "incident_id": 99999}]}
            assert (await wu.http.post("/api/duty/handovers", json=wrong_link)).status_code == 404
            await move_to(zhihui, local(12))
            first = await wu.http.post("/api/duty/handovers", json=written)
            assert first.status_code == 201, first.text
            handover = first.json()
            assert [i["text"] for i in handover["items"]] == ["Watch the gate crowd", "Call the bank"]
            assert handover["items"][0]["incident_id"] == incident_id
            assert (handover["written_at"], handover["accepted_at"]) == (iso(local(12)), None)
            crowd, bank = (i["id"] for i in handover["items"])

            assert (await zhou.http.post(f"/api/duty/handovers/{handover['id']}/accept")).status_code == 403
            assert (await wu.http.post(f"/api/duty/handovers/{handover['id']}/accept")).status_code == 409
            await move_to(zhihui, local(12, 5))
            accepted = (await xu.http.post(f"/api/duty/handovers/{handover['id']}/accept")).json()
            assert (accepted["accepted_at"], accepted["accepted_by"]["id"]) == (iso(local(12, 5)), xu.id)
            await move_to(zhihui, local(12, 6))
            assert (await xu.http.post(f"/api/duty/handovers/{handover['id']}/accept")).json() == accepted

            # Xu's shift: the bank calls back (closed), a new item comes; at 17:30 to whoever is next.
            await xu.http.post("/api/duty/sign-in", json={"post": DESK})
            closed = await xu.http.post(f"/api/duty/items/{bank}/close", json={"note": "The bank confirmed"})
            assert (closed.json()["closed_at"], closed.json()["closed_by"]["id"]) == (
                iso(local(12, 6)),
                xu.id,
            )
            assert (await xu.http.post(f"/api/duty/items/{bank}/close")).json() == closed.json()
            assert (await shift(chief.http, zhou.id, DESK, local(17, 30), local(22))).status_code == 201
            await move_to(zhihui, local(17, 25))
            second = await xu.http.post(
                "/api/duty/handovers",
                json={"post": DESK, "notes": "Evening: crowd gone home.", "items": [{"text": "File report"}]},
            )
            assert second.status_code == 201, second.text
            assert second.json()["to_person"]["id"] == zhou.id  # the next one rostered on the post
            assert [i["text"] for i in second.json()["items"]] == ["Watch the gate crowd", "File report"]
            assert second.json()["items"][0]["id"] == crowd  # the same item, carried forward

            still_open = (await zhou.http.get("/api/duty/items", params={"post": DESK})).json()
            assert [i["text"] for i in still_open] == ["Watch the gate crowd", "File report"]
            pending = (await zhou.http.get("/api/duty/handovers", params={"pending": True})).json()
            assert [h["id"] for h in pending] == [second.json()["id"]]
            # The first handover lists its items as they stand now: the bank call is closed.
            again = (await zhou.http.get(f"/api/duty/handovers/{handover['id']}")).json()
            assert [i["closed_note"] for i in again["items"]] == ["", "The bank confirmed"]

        audited = await query(
            database_url,
            "SELECT action FROM audit_event WHERE action IN ('duty.handover', 'duty.handover_accept', "
            "'duty.item_close') ORDER BY id",
        )
    assert [a for (a,) in audited] == [
        "duty.handover",
        "duty.handover_accept",
        "duty.item_close",
        "duty.handover",
    ]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_duty_log_entries_are_corrected_in_a_chain_never_edited(backend: str, tmp_path: Path) -> None:
    """R10 值班记录: entries are listed per day and searchable; a mistake is corrected by a new entry
    naming the newest of its chain; the database refuses to change or remove one."""
    clock = ManualClock(local(9))
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            wu = await zhihui.person("wu", Role.DUTY_OFFICER)
            leader = await zhihui.person("leader", Role.LEADER)
            li = await zhihui.person("li", Role.FIELD_OFFICER)
            await wu.http.post("/api/duty/sign-in", json={"post": DESK})

            def entry(kind: str, text: str, corrects: int | None = None) -> dict[str, Any]:
                return {"kind": kind, "text": text, "corrects_id": corrects}

            call = await wu.http.post("/api/duty/log", json=entry("call", "Bank of Shanghai called at 9:00"))
            assert call.status_code == 201, call.text
            assert (call.json()["post"], call.json()["author"]["id"], call.json()["at"]) == (
                DESK,
                wu.id,
                iso(local(9)),
            )
            await move_to(zhihui, local(9, 10))
            fix = await leader.http.post(
                "/api/duty/log", json=entry("call", "Bank of China called at 9:00", call.json()["id"])
            )
            assert fix.status_code == 201 and fix.json()["post"] is None  # the leader is not signed in
            twice = await wu.http.post("/api/duty/log", json=entry("call", "Another bank", call.json()["id"]))
            assert twice.status_code == 409 and f"entry {fix.json()['id']}" in twice.json()["detail"]
            fix2 = await wu.http.post(
                "/api/duty/log", json=entry("call", "Bank of China called at 9:05", fix.json()["id"])
            )
            assert fix2.status_code == 201
            visit = await wu.http.post("/api/duty/log", json=entry("visit", "Petitioner Zhang at the desk"))
            assert visit.status_code == 201
            assert (await wu.http.post("/api/duty/log", json=entry("call", "x", 99999))).status_code == 404
            assert (await wu.http.post("/api/duty/log", json=entry("gossip", "x"))).status_code == 422
            assert (await wu.http.post("/api/duty/log", json=entry("note", "   "))).status_code == 422
            assert (await li.http.post("/api/duty/log", json=entry("note", "x"))).status_code == 403

            await move_to(zhihui, local(9) + timedelta(days=1))
            await wu.http.post("/api/duty/log", json=entry("note", "Tuesday: bank statement arrived"))

            monday = (await wu.http.get("/api/duty/log", params={"day": "2026-03-02"})).json()
            chain = [(e["id"], e["corrects_id"], e["corrected_by_id"]) for e in monday["items"]]
            ids = [call.json()["id"], fix.json()["id"], fix2.json()["id"], visit.json()["id"]]
            assert chain == [
                (ids[0], None, ids[1]),
                (ids[1], ids[0], ids[2]),
                (ids[2], ids[1], None),
                (ids[3], None, None),
            ]
            assert monday["total"] == 4
            found = (await wu.http.get("/api/duty/log", params={"q": "BANK"})).json()
            assert [e["text"] for e in found["items"]][-1] == "Tuesday: bank statement arrived"
            assert found["total"] == 4
            visits = (await wu.http.get("/api/duty/log", params={"kind": "visit"})).json()
            assert [e["id"] for e in visits["items"]] == [ids[3]]
            assert (await wu.http.get("/api/duty/log", params={"q": "100%"})).json()["total"] == 0

        for statement in ("UPDATE duty_log_entry SET text = 'forged'", "DELETE FROM duty_log_entry"):
            with pytest.raises(Exception, match="append-only"):
                await query(database_url, statement)
        audited = await query(database_url, "SELECT count(*) FROM audit_event WHERE action = 'duty.log'")
    assert audited == [(5,)]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_empty_seat_raises_an_alert_in_working_hours_and_a_sign_in_resolves_it(
    backend: str, tmp_path: Path
) -> None:
    """R10 上班时间一律有人在岗: a required post with nobody signed in, after the grace, during working
    hours raises one empty_seat alert; signing in resolves it at once; lunch and weekends raise
    nothing and end what was open."""
    clock = ManualClock(local(8))
    subject = f"seat:{DESK}"
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            wu = await zhihui.person("wu", Role.DUTY_OFFICER)
            await move_to(zhihui, local(8, 30) + timedelta(seconds=GRACE - 10))
            assert alerts_of(zhihui, subject) == []
            await move_to(zhihui, local(8, 30) + timedelta(seconds=GRACE + 5))
            await until(lambda: len(alerts_of(zhihui, subject)) == 1)
            raised = alerts_of(zhihui, subject)[0]
            assert (raised["kind"], raised["level"], raised["raised_at"]) == (
                "empty_seat",
                "warning",
                iso(local(8, 30) + timedelta(seconds=GRACE + 5)),
            )
            assert "Command desk" in raised["message"] and "08:30" in raised["message"]
            await move_to(zhihui, local(9))
            assert len(alerts_of(zhihui, subject)) == 1  # still the one alert

            assert (await wu.http.post("/api/duty/sign-in", json={"post": DESK})).status_code == 200
            resolved = alerts_of(zhihui, subject)[-1]  # at once, not at the rules' next tick
            assert (resolved["id"], resolved["resolved_at"]) == (raised["id"], iso(local(9)))
            assert resolved["resolved_note"] == "Wu signed in"
            await move_to(zhihui, local(10))
            assert len(alerts_of(zhihui, subject)) == 2

            await move_to(zhihui, local(11))
            await wu.http.post("/api/duty/sign-out")
            await move_to(zhihui, local(11) + timedelta(seconds=GRACE - 10))
            assert len(alerts_of(zhihui, subject)) == 2  # the grace counts from the sign-out
            await move_to(zhihui, local(11) + timedelta(seconds=GRACE + 5))
            await until(lambda: len(alerts_of(zhihui, subject)) == 3)
            second = alerts_of(zhihui, subject)[-1]
            assert "11:00" in second["message"]

            await move_to(zhihui, local(12, 1))  # lunch: no longer required; the alert ends
            await until(lambda: len(alerts_of(zhihui, subject)) == 4)
            assert alerts_of(zhihui, subject)[-1]["resolved_note"] == "working hours are over"
            await move_to(zhihui, local(13, 59))
            assert len(alerts_of(zhihui, subject)) == 4
            await move_to(zhihui, local(14) + timedelta(seconds=GRACE + 1))
            await until(lambda: len(alerts_of(zhihui, subject)) == 5)

            await move_to(zhihui, local(18))
            await move_to(zhihui, local(10, day=SATURDAY))  # the weekend: nobody need be there
            await move_to(zhihui, local(16, day=SATURDAY))
            assert len(alerts_of(zhihui, subject)) == 6  # the evening resolved the afternoon's
            assert alerts_of(zhihui, subject)[-1]["resolved_at"] is not None
            leader_seat = alerts_of(zhihui, f"seat:{LEADER_POST}")
            assert leader_seat == []  # not a required post

        rows = await query(
            database_url,
            "SELECT raised_at, resolved_at FROM alert WHERE subject = :subject ORDER BY id",
            subject=subject,
        )
    assert len(rows) == 3 and all(resolved is not None for _, resolved in rows)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_second_level_escalation_goes_to_the_leader_on_duty(backend: str, tmp_path: Path) -> None:
    """R4, R6, R10: a missed acknowledgement goes to the incident's commander, then to the leader
    on duty: the one signed in on the leader-on-duty post, else the one rostered on it, else (as
    before there was a roster) the first active leader."""
    clock = ManualClock(local(9))
    leader_after = 300.0
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock, leader_after_seconds=leader_after) as zhihui:
            first_leader = await zhihui.person("first-leader", Role.LEADER)
            rostered = await zhihui.person("rostered-leader", Role.LEADER)
            present = await zhihui.person("present-leader", Role.LEADER)
            chief = await zhihui.person("chief", Role.COMMANDER)
            li = await zhihui.person("li", Role.FIELD_OFFICER)
            opened = await chief.http.post(
                "/api/incidents", json={"kind": "emergency", "title": "Gate", "officer_ids": [li.id]}
            )
            incident_id = opened.json()["id"]

            async def missed_directive() -> dict[str, Any]:
                """A directive li does not acknowledge; its escalation to the leader."""
                issued = await chief.http.post(
                    "/api/directives",
                    json={"incident_id": incident_id, "text": "Report", "ack_deadline_seconds": 60},
                )
                assert issued.status_code == 201, issued.text
                directive_id = issued.json()["id"]
                start = zhihui.clock.now()
                await move_to(zhihui, start + timedelta(seconds=61))
                await move_to(zhihui, start + timedelta(seconds=61 + leader_after))
                await until(
                    lambda: any(
                        e["directive"]["id"] == directive_id and e["escalation"]["level"] == "leader"
                        for e in zhihui.escalations()
                    )
                )
                return next(
                    e["escalation"]
                    for e in zhihui.escalations()
                    if e["directive"]["id"] == directive_id and e["escalation"]["level"] == "leader"
                )

            assert (await missed_directive())["to_person"]["id"] == first_leader.id  # nobody on the post

            now = zhihui.clock.now()
            made = await shift(
                chief.http, rostered.id, LEADER_POST, now + timedelta(seconds=1), local(17, 30)
            )
            assert made.status_code == 201, made.text
            await move_to(zhihui, now + timedelta(seconds=2))
            assert (await missed_directive())["to_person"]["id"] == rostered.id

            signed = await present.http.post("/api/duty/sign-in", json={"post": LEADER_POST})
            assert signed.json()["unscheduled"] is True
            assert (await missed_directive())["to_person"]["id"] == present.id
