"""Deadlines as the API stores and shows them (T1-T4, R8.2, R8.3, R7.4, R7.5).

Working days follow the official 2026 arrangement (chinesecalendar): Spring Festival off
02-15..02-23 with make-up Saturdays 02-14 and 02-28; Mid-Autumn off 09-25; National Day off
10-01..10-07 with make-up Sunday 09-20 and Saturday 10-10. Every deadline is 17:30 Shanghai.
"""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


from ticketing.calendar import CalendarOverrides
from ticketing.domain import Domain
from tests.helpers import local, ok, report_back, travel, when

SH = ZoneInfo("Asia/Shanghai")


def dispatched(api, kind: str = "consultation", unit: str = "water_supply", as_: str = "op1") -> tuple[str, dict]:
    """Accept and dispatch now; returns the case number and its one work order."""
    c = ok(api.post("/api/v1/cases", as_, json={"kind": kind, "channel": "mobile", "title": "诉求",
                                                 "description": "诉求内容"}), 201)
    c = ok(api.post(f"/api/v1/cases/{c['number']}/dispatch", as_, json={"units": [unit]}))
    (wo,) = c["work_orders"]
    return c["number"], wo


# ---- T1/T4: working days across the Spring Festival ------------------------------------------
def test_t1_t4_spring_festival_counts_the_make_up_saturday_and_skips_the_holiday(api, clock):
    travel(api, clock, "2026-02-13T10:00")  # Friday before the holiday
    number, wo = dispatched(api, "consultation")
    # R8.3: 5 working days = 02-14 (make-up Sat), 02-24, 02-25, 02-26, 02-27.
    assert when(wo["report_due_at"]) == local("2026-02-27T17:30")
    # R8.2 / R8.6: 2 working days = 02-14, 02-24.
    assert when(wo["notify_due_at"]) == local("2026-02-24T17:30")
    assert when(wo["return_due_at"]) == local("2026-02-24T17:30")
    # R7.4/R7.5: 2 calendar days after the deadline is Sunday 03-01: ends Monday 03-02 (T4).
    c = ok(api.get(f"/api/v1/cases/{number}", "op1"))
    assert when(c["deadline_at"]) == local("2026-02-27T17:30")
    assert when(c["callback_due_at"]) == local("2026-03-02T17:30")
    assert when(c["close_due_at"]) == local("2026-03-02T17:30")

    # A suggestion (10 working days) also counts the second make-up Saturday, 02-28.
    _, wo10 = dispatched(api, "suggestion")
    assert when(wo10["report_due_at"]) == local("2026-03-05T17:30")

    # Dispatched on the make-up Saturday itself: that day is not counted (T4).
    travel(api, clock, "2026-02-14T09:00")
    _, sat = dispatched(api, "consultation")
    assert when(sat["notify_due_at"]) == local("2026-02-25T17:30")
    assert when(sat["report_due_at"]) == local("2026-02-28T17:30")  # 24, 25, 26, 27, 28 (make-up Sat)


def test_t1_t4_national_day_counts_make_up_days_and_skips_the_holiday(api, clock):
    travel(api, clock, "2026-09-30T10:00")  # Wednesday before National Day
    _, wo = dispatched(api, "consultation")
    assert when(wo["notify_due_at"]) == local("2026-10-09T17:30")  # 10-08, 10-09
    # 10-08, 10-09, 10-10 (make-up Sat), 10-12, 10-13.
    assert when(wo["report_due_at"]) == local("2026-10-13T17:30")

    # Evening dispatch: the start day is never counted, so the same deadlines.
    travel(api, clock, "2026-09-30T19:00")
    _, evening = dispatched(api, "consultation")
    assert when(evening["notify_due_at"]) == local("2026-10-09T17:30")
    assert when(evening["report_due_at"]) == local("2026-10-13T17:30")

    # Dispatched on Saturday 09-19: make-up Sunday 09-20 is the first working day.
    travel(api, clock, "2026-09-19T10:00")
    _, early = dispatched(api, "consultation")
    assert when(early["notify_due_at"]) == local("2026-09-21T17:30")
    # 09-20, 09-21, 09-22, 09-23, 09-24; Mid-Autumn Friday 09-25 would have been the 6th.
    assert when(early["report_due_at"]) == local("2026-09-24T17:30")
    # Dispatched 09-24: 09-25 (Mid-Autumn) to 09-27 are off; 2 working days = 09-28, 09-29.
    travel(api, clock, "2026-09-24T10:00")
    _, mid = dispatched(api, "consultation")
    assert when(mid["notify_due_at"]) == local("2026-09-29T17:30")


# ---- T3: stored, shown, and the same after a reload on both stores ---------------------------
def test_t3_deadlines_are_stored_at_1730_shanghai_and_shown_to_those_who_act(api, clock):
    travel(api, clock, "2026-02-13T10:00")
    number, wo = dispatched(api, "consultation")
    due = local("2026-02-27T17:30")
    assert due.astimezone(UTC) == datetime(2026, 2, 27, 9, 30, tzinfo=UTC)
    for user in ("op1", "bo1", "sup1"):
        c = ok(api.get(f"/api/v1/cases/{number}", user))
        assert when(c["deadline_at"]) == due and when(c["work_orders"][0]["report_due_at"]) == due
    # The unit that must act sees the same deadlines on its work order and in its list.
    w = ok(api.get(f"/api/v1/work-orders/{wo['id']}", "water1"))
    assert when(w["report_due_at"]) == due and when(w["notify_due_at"]) == local("2026-02-24T17:30")
    listed = ok(api.get("/api/v1/work-orders", "water1"))
    assert [when(x["report_due_at"]) for x in listed] == [due]
    # Whether each was met is stored with it too (T3): none yet.
    assert w["notify_met"] is None and w["report_met"] is None and w["overdue"] is False

    # One minute past the deadline the work order and the case show as overdue.
    travel(api, clock, "2026-02-27T17:31")
    assert ok(api.get(f"/api/v1/work-orders/{wo['id']}", "water1"))["overdue"] is True
    assert ok(api.get(f"/api/v1/cases/{number}", "op1"))["overdue"] is True
    assert [c["number"] for c in ok(api.get("/api/v1/cases?overdue=true", "bo1"))] == [number]
    travel(api, clock, "2026-02-27T17:29")
    assert ok(api.get(f"/api/v1/cases/{number}", "op1"))["overdue"] is False
    assert ok(api.get("/api/v1/cases?overdue=true", "bo1")) == []


# ---- T3: due-soon and overdue lists as the clock moves ----------------------------------------
def test_t3_due_soon_and_overdue_lists_find_exactly_the_right_work_orders(api, clock):
    def due(user: str, which: str) -> set[int]:
        return {w["id"] for w in ok(api.get(f"/api/v1/work-orders?due={which}", user))}

    travel(api, clock, "2026-02-13T10:00")
    _, a = dispatched(api, "consultation")  # notify 02-24, report 02-27
    _, b = dispatched(api, "suggestion")  # notify 02-24, report 03-05
    A, B = a["id"], b["id"]

    travel(api, clock, "2026-02-23T18:00")  # last holiday evening
    assert due("op1", "notify_soon") == {A, B}
    assert due("op1", "notify_overdue") == set() and due("op1", "soon") == set() and due("op1", "overdue") == set()

    travel(api, clock, "2026-02-24T10:00")
    ok(api.post(f"/api/v1/work-orders/{B}/notify", "water1", json={"channel": "phone"}))
    _, c = dispatched(api, "consultation", unit="urban_management")  # notify 02-26, report 03-03
    C = c["id"]
    assert due("op1", "notify_soon") == {A}  # B was notified; C is not due within 24 h

    travel(api, clock, "2026-02-24T17:31")
    assert due("op1", "notify_overdue") == {A}
    assert due("op1", "notify_soon") == set()

    travel(api, clock, "2026-02-26T18:00")
    assert due("op1", "notify_overdue") == {A, C}
    assert due("op1", "soon") == {A} and due("op1", "overdue") == set()
    # Each unit sees only its own (R5.3).
    assert due("water1", "notify_overdue") == {A} and due("urban1", "notify_overdue") == {C}

    travel(api, clock, "2026-02-27T17:31")
    assert due("bo1", "overdue") == {A} and due("bo1", "soon") == set()

    travel(api, clock, "2026-02-28T10:00")  # make-up Saturday: the unit works and answers late
    ok(api.post(f"/api/v1/work-orders/{A}/notify", "water1", json={"channel": "phone"}))
    w = ok(report_back(api, A, "water1", answer="已答复"))
    assert w["notify_met"] is False and w["report_met"] is False
    assert due("bo1", "overdue") == set() and due("bo1", "notify_overdue") == {C}

    travel(api, clock, "2026-03-03T17:31")
    assert due("bo1", "overdue") == {C}
    assert due("bo1", "soon") == set()  # B is due 03-05 17:30, more than 24 h away
    travel(api, clock, "2026-03-04T18:00")
    assert due("bo1", "soon") == {B} and due("bo1", "overdue") == {C}
    assert due("water1", "overdue") == set() and due("water1", "soon") == {B}


# ---- T1: a year whose arrangement is entered (the unpublished case: test_provisional_deadlines.py)
def test_t1_once_the_year_is_configured_the_same_dispatch_works(api, clock, domain, engine, tmp_path):
    from fastapi.testclient import TestClient

    from callcenter.api.app import create_app
    from callcenter.settings import Settings
    from tests.conftest import CONFIG_DIR, Api

    # Illustrative 2027 entry (not the real arrangement): New Year's Day off.
    overrides = CalendarOverrides.from_mapping({2027: {"holidays": ["2027-01-01"]}})
    configured = Domain(policy=domain.policy, calendar=domain.policy.work_calendar(overrides),
                        city=domain.city, clock=clock)
    app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=configured, engine=engine)
    travel(api, clock, "2026-12-28T10:00")
    with TestClient(app) as client:
        api2 = Api(client)
        _, wo = dispatched(api2, "consultation")
    # 12-29, 12-30, 12-31, (01-01 off, weekend), 01-04, 01-05.
    assert when(wo["report_due_at"]) == local("2027-01-05T17:30")
    assert when(wo["notify_due_at"]) == local("2026-12-30T17:30")
