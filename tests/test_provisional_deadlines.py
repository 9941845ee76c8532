"""No cliff at the year's end (T1, T3, A1, R7.4, R8.2, R8.3, R8.5).

December's cases have January deadlines before the State Council publishes next year's holiday
arrangement. They are counted on the statutory calendar, marked provisional (暂定), and counted
again when the arrangement is entered: each move audited, the marker cleared, the unit told when
its deadline moved earlier.

Expected dates come from an independent computation: a plain day-by-day walk over
`chinese_calendar` (2026) and, for 2027, the `holidays` package's statutory days or the
arrangement entered in the test -- not from ticketing's own calendar.
"""
from __future__ import annotations

import shutil
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import holidays as holidays_pkg
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tests.conftest import CONFIG_DIR, Api
from tests.helpers import actor_named, ok, refused, report_back, travel, when
from ticketing.domain import Domain
from ticketing.models import UnitNotification
from ticketing.store import session_scope

SH = ZoneInfo("Asia/Shanghai")
STATUTORY_2027 = set(holidays_pkg.China(years=2027, observed=False))
# An arrangement for the test (not the real one): New Year's Day with a make-up Saturday 01-02,
# and a Spring Festival longer than the law's four days (02-05..02-13) with make-up Saturday 02-20.
ARRANGEMENT = {"holidays": ["2027-01-01", "2027-02-05..2027-02-13"], "workdays": ["2027-01-02", "2027-02-20"]}
ENTERED_OFF = {date(2027, 1, 1)} | {date(2027, 2, 5) + timedelta(days=k) for k in range(9)}
ENTERED_ON = {date(2027, 1, 2), date(2027, 2, 20)}


def statutory(d: date) -> bool:
    if d.year == 2026:
        return chinese_calendar.is_workday(d)
    return d.weekday() < 5 and d not in STATUTORY_2027


def entered(d: date) -> bool:
    if d.year == 2026:
        return chinese_calendar.is_workday(d)
    return d in ENTERED_ON or (d.weekday() < 5 and d not in ENTERED_OFF)


def working_days(start: date, n: int, working) -> datetime:
    d = start
    while n:
        d += timedelta(days=1)
        n -= working(d)
    return datetime.combine(d, time(17, 30), tzinfo=SH)


def calendar_days(deadline: datetime, n: int, working) -> datetime:
    d = deadline.astimezone(SH).date() + timedelta(days=n)
    while not working(d):
        d += timedelta(days=1)
    return datetime.combine(d, time(17, 30), tzinfo=SH)


@pytest.fixture
def config_dir(tmp_path):
    """The city's config in a folder of the test's own: entering an arrangement writes into it."""
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    return target


@pytest.fixture
def own(seeded, clock, engine, config_dir, tmp_path):
    """An API over a domain loaded from `config_dir` (its own calendar, not the suite's shared one)."""
    from fastapi.testclient import TestClient

    from callcenter.api.app import create_app
    from callcenter.settings import Settings

    domain = Domain.load(config_dir, clock=clock)
    app = create_app(Settings(state_dir=tmp_path, config_dir=config_dir), domain=domain, engine=engine)
    with TestClient(app) as client:
        api = Api(client)
        api.domain = domain
        yield api


def accept_and_dispatch(api, kind: str, unit: str = "water_supply") -> dict:
    c = ok(api.post("/api/v1/cases", "op1", json={"kind": kind, "channel": "mobile", "title": "诉求",
                                                  "description": "诉求内容", "citizen_phone": "13800000001"}), 201)
    return ok(api.post(f"/api/v1/cases/{c['number']}/dispatch", "op1", json={"units": [unit]}))


def case(api, number: str) -> dict:
    return ok(api.get(f"/api/v1/cases/{number}", "bo1"))


def test_t1_december_cases_get_provisional_deadlines_corrected_when_the_arrangement_is_entered(own, clock, sessions):
    api = own
    # A complaint of 12-17: its report limit (10 working days) is 12-31, official; its R7.4
    # callback limit (2 calendar days later) lands in 2027: provisional.
    travel(api, clock, "2026-12-17T10:00")
    a = accept_and_dispatch(api, "complaint")
    (a_wo,) = a["work_orders"]
    assert when(a["deadline_at"]) == working_days(date(2026, 12, 17), 10, statutory)
    assert "report_due_at" not in a_wo["provisional_deadlines"]
    assert when(a["callback_due_at"]) == calendar_days(when(a["deadline_at"]), 2, statutory)
    assert {"callback_due_at", "close_due_at"} <= set(a["provisional_deadlines"])
    assert "deadline_at" not in a["provisional_deadlines"]

    # 2026-12-18: from here on a complaint used to be refused (503). Now it is dispatched.
    travel(api, clock, "2026-12-18T10:00")
    b = accept_and_dispatch(api, "complaint")
    (b_wo,) = b["work_orders"]
    assert b["status"] == "dispatched"
    assert when(b_wo["report_due_at"]) == working_days(date(2026, 12, 18), 10, statutory)  # R8.3
    assert when(b_wo["notify_due_at"]) == working_days(date(2026, 12, 18), 2, statutory)  # R8.2
    assert b_wo["provisional_deadlines"] == ["report_due_at"]  # the notify limit stays in 2026
    assert {"deadline_at", "callback_due_at", "close_due_at"} <= set(b["provisional_deadlines"])

    # A consultation of 12-28 (5 working days).
    travel(api, clock, "2026-12-28T10:00")
    c = accept_and_dispatch(api, "consultation")
    (c_wo,) = c["work_orders"]
    assert when(c_wo["report_due_at"]) == working_days(date(2026, 12, 28), 5, statutory)
    assert "report_due_at" in c_wo["provisional_deadlines"]

    # R8.5: complaint B's unit asks for 25 more working days, into February 2027; approved.
    ext = ok(api.post(f"/api/v1/work-orders/{b_wo['id']}/extensions", "water1",
                      json={"legal_basis": "《信访条例》第三十三条", "extra_working_days": 25}), 201)
    ok(api.post(f"/api/v1/extensions/{ext['id']}/decision", "bo1", json={"approve": True}))
    b_wo = ok(api.get(f"/api/v1/work-orders/{b_wo['id']}", "bo1"))
    b_statutory_due = working_days(working_days(date(2026, 12, 18), 10, statutory).date(), 25, statutory)
    assert when(b_wo["report_due_at"]) == b_statutory_due and b_statutory_due.month == 2
    assert "report_due_at" in b_wo["provisional_deadlines"]

    # R7.4: complaint A is reported on 12-31; its callback date is provisional.
    travel(api, clock, "2026-12-31T10:00")
    ok(api.post(f"/api/v1/work-orders/{a_wo['id']}/notify", "water1", json={"channel": "phone"}))
    ok(report_back(api, a_wo['id'], "water1", answer="已处理"))
    a = case(api, a["number"])
    assert a["status"] == "reported" and "callback_due_at" in a["provisional_deadlines"]
    a_callback_statutory = when(a["callback_due_at"])

    # The administrator enters the 2027 arrangement: a make-up Saturday 01-02 and a longer
    # Spring Festival.
    moved = ok(api.put("/api/v1/calendar/2027", "admin1", json=ARRANGEMENT))
    assert moved["warning"] is None
    assert dict((y["year"], y["source"]) for y in moved["years"])[2027] == "override"

    a, b, c = (case(api, x["number"]) for x in (a, b, c))
    b_wo = ok(api.get(f"/api/v1/work-orders/{b_wo['id']}", "bo1"))
    c_wo = ok(api.get(f"/api/v1/work-orders/{c_wo['id']}", "bo1"))
    # The dates an independent count on the entered arrangement gives; no marker left.
    assert when(a["callback_due_at"]) == calendar_days(when(a["deadline_at"]), 2, entered)
    assert when(a["callback_due_at"]) < a_callback_statutory  # the make-up Saturday counts
    b_entered_due = working_days(working_days(date(2026, 12, 18), 10, entered).date(), 25, entered)
    assert when(b_wo["report_due_at"]) == b_entered_due > b_statutory_due  # the longer holiday
    assert when(b["deadline_at"]) == b_entered_due
    assert when(b["callback_due_at"]) == calendar_days(b_entered_due, 2, entered)
    assert when(c_wo["report_due_at"]) == working_days(date(2026, 12, 28), 5, entered)
    for row in (a, b, c, b_wo, c_wo):
        assert row["provisional_deadlines"] == [], row
    assert {(m["case_number"], m["column"]) for m in moved["moved"]} >= {
        (a["number"], "callback_due_at"), (b["number"], "report_due_at"), (c["number"], "report_due_at")}

    # A1: each move is on record with its old and new dates.
    events = ok(api.get(f"/api/v1/cases/{b['number']}/events", "bo1"))
    corrected = [e for e in events if e["action"] == "deadline_corrected"]
    changes = {k: v for e in corrected for k, v in e["data"]["changes"].items()}
    assert when(changes["report_due_at"]["from"]) == b_statutory_due
    assert when(changes["report_due_at"]["to"]) == b_entered_due
    assert ok(api.get("/api/v1/audit/verify", "admin1"))["ok"]

    # The unit whose open deadline moved earlier (C) is told; B's moved later: no notice.
    with session_scope(sessions) as s:
        notices = s.execute(select(UnitNotification).where(UnitNotification.kind == "deadline_moved")).scalars().all()
        assert [n.work_order_id for n in notices] == [c_wo["id"]]
        assert c["number"] in notices[0].message and "提前" in notices[0].message

    # Nothing left to correct: entering the same arrangement again moves nothing.
    assert ok(api.put("/api/v1/calendar/2027", "admin1", json=ARRANGEMENT))["moved"] == []


def test_t1_r8_3_a_report_judged_on_a_provisional_limit_is_judged_again(own, clock):
    api = own
    travel(api, clock, "2026-12-28T10:00")
    c = accept_and_dispatch(api, "consultation")
    (wo,) = c["work_orders"]
    # Reported on Tuesday 01-05 10:00: in time under the statutory count (due 01-05 17:30) ...
    travel(api, clock, "2027-01-05T10:00")
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/notify", "water1", json={"channel": "phone"}))
    wo = ok(report_back(api, wo['id'], "water1", answer="已答复"))
    assert wo["report_met"] is True
    # ... but Saturday 01-02 turns out a working day: the official limit was 01-04 17:30.
    ok(api.put("/api/v1/calendar/2027", "admin1", json=ARRANGEMENT))
    wo = ok(api.get(f"/api/v1/work-orders/{wo['id']}", "bo1"))
    due = working_days(date(2026, 12, 28), 5, entered)
    assert when(wo["report_due_at"]) == due and due.date() == date(2027, 1, 4)
    assert wo["report_met"] is False
    event = [e for e in ok(api.get(f"/api/v1/cases/{c['number']}/events", "bo1"))
             if e["action"] == "deadline_corrected" and e["data"].get("met")]
    assert event and event[0]["data"]["met"] == {"report_met": False}


def test_t1_an_arrangement_is_checked_before_anything_changes(own, clock, config_dir):
    api = own
    before = (config_dir / "calendar_overrides.yaml").read_text(encoding="utf-8")
    r = api.put("/api/v1/calendar/2027", "admin1", json={"holidays": ["2027-01-01"], "workdays": ["2027-01-04"]})
    body = refused(r, 422, "T1")
    assert "2027-01-04 is a weekday" in body["detail"] and str(config_dir) not in body["detail"]
    refused(api.put("/api/v1/calendar/2027", "admin1", json={"holidays": ["2028-01-01"]}), 422, "T1")
    refused(api.put("/api/v1/calendar/2027", "bo1", json=ARRANGEMENT), 403, "T1")
    assert (config_dir / "calendar_overrides.yaml").read_text(encoding="utf-8") == before


def test_t1_standing_warning_from_november_until_next_year_is_entered(own, clock):
    api = own
    travel(api, clock, "2026-10-20T10:00")
    assert ok(api.get("/api/v1/calendar", "bo1"))["warning"] is None
    travel(api, clock, "2026-12-06T10:00")
    status = ok(api.get("/api/v1/calendar", "admin1"))
    assert "2027" in status["warning"] and "暂定" in status["warning"]
    assert dict((y["year"], y["source"]) for y in status["years"]) == {
        2025: "official", 2026: "official", 2027: "provisional"}
    refused(api.get("/api/v1/calendar", "water1"), 403, "T1")
    ok(api.put("/api/v1/calendar/2027", "admin1", json=ARRANGEMENT))
    assert ok(api.get("/api/v1/calendar", "bo1"))["warning"] is None


def consultation_of_12_28(sessions, clock, config_dir) -> tuple[Domain, int]:
    """A consultation dispatched on 2026-12-28 (its report limit provisional), on a domain of its
    own loaded from `config_dir`; returns the domain and the work order's id."""
    clock.set("2026-12-28T10:00")
    domain = Domain.load(config_dir, clock=clock)
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        c = wf.accept(actor_named(s, "bo1"), kind="consultation", channel="web", title="诉求", description="内容")
        (wo,) = wf.dispatch(actor_named(s, "bo1"), c, units=["water_supply"])
        return domain, wo.id


def test_t1_calendar_cli_status_set_and_correction(seeded, clock, config_dir, engine, monkeypatch):
    from callcenter.cli import main
    from callcenter.settings import get_settings

    monkeypatch.setenv("CALLCENTER_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("CALLCENTER_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    domain, wo_id = consultation_of_12_28(seeded, clock, config_dir)
    runner = CliRunner()
    try:
        out = runner.invoke(main, ["calendar", "status"])
        assert out.exit_code == 0, out.output
        assert "2026  official" in out.output and "2027  provisional" in out.output
        out = runner.invoke(main, ["calendar", "set", "2027", "--holiday", "2027-01-01", "--workday", "2027-01-05"])
        assert out.exit_code == 1 and "weekday" in out.output
        out = runner.invoke(main, ["calendar", "set", "2027", "--holiday", "2027-01-01",
                                   "--holiday", "2027-02-05..2027-02-13", "--workday", "2027-01-02",
                                   "--workday", "2027-02-20"])
        assert out.exit_code == 0, out.output
        assert f"work order {wo_id} report_due_at: 2027-01-05 17:30 -> 2027-01-04 17:30" in out.output
        out = runner.invoke(main, ["calendar", "status"])
        assert "2027  override" in out.output
    finally:
        get_settings.cache_clear()
    text = (config_dir / "calendar_overrides.yaml").read_text(encoding="utf-8")
    assert text.startswith("# Official holiday arrangements")  # the administrator's notes are kept
    with session_scope(seeded) as s:
        from ticketing.models import WorkOrder

        wo = s.get(WorkOrder, wo_id)
        assert wo.provisional_deadlines is None
        assert wo.report_due_at == working_days(date(2026, 12, 28), 5, entered)


def test_t1_scheduler_takes_an_override_file_edited_by_hand(seeded, clock, config_dir):
    from callback.deadlines import sweep_deadlines

    domain, wo_id = consultation_of_12_28(seeded, clock, config_dir)
    with session_scope(seeded) as s:
        assert sweep_deadlines(s, domain).corrected == 0  # first sweep: nothing known yet
    # The administrator writes the year into the file; the running scheduler's next sweep takes it.
    path = config_dir / "calendar_overrides.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("\n{}\n", "\n") +
                    "2027:\n  holidays: [2027-01-01]\n  workdays: [2027-01-02]\n", encoding="utf-8")
    with session_scope(seeded) as s:
        assert sweep_deadlines(s, domain).corrected >= 1
    with session_scope(seeded) as s:
        from ticketing.models import WorkOrder

        wo = s.get(WorkOrder, wo_id)
        assert wo.provisional_deadlines is None
        assert wo.report_due_at == datetime(2027, 1, 4, 17, 30, tzinfo=SH)
        assert sweep_deadlines(s, domain).corrected == 0
