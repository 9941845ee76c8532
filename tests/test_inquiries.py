"""Investigations and accountability (R6.1; 过错问责, Article 4 and Article 6 (二) 3 of the 2011
measures): supervision opens an inquiry on a case or a unit, the unit explains within a limit in
working days (urged like a work order when late), supervision records findings and a decision.
The fixture clock starts Monday 2026-03-02 09:00 Shanghai."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from callback.deadlines import sweep_deadlines
from tests.helpers import chain_verified, ok, refused, travel
from tests.test_provisional_deadlines import ARRANGEMENT, config_dir, own  # noqa: F401 (fixtures)
from ticketing.inquiry_model import Inquiry
from ticketing.models import AuditEvent, MemberUnit, UnitNotification
from ticketing.store import session_scope
from ticketing.workflow.inquiries import inquiry_counts

CANARY = "绝密线索甲乙丙"


def _dispatched(api, unit: str = "water_supply") -> tuple[str, int]:
    c = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "consultation", "channel": "landline", "title": "水压低", "description": "三楼以上没水",
        "citizen_phone": "13800000001"}), 201)
    c = ok(api.post(f"/api/v1/cases/{c['number']}/dispatch", "op1", json={"units": [unit]}))
    return c["number"], c["work_orders"][0]["id"]


def _open(api, as_: str = "sup1", **body):
    body = {"reason": "overdue", "description": "请说明未按时告知诉求人的原因", **body}
    return api.post("/api/v1/inquiries", as_, json=body)


def _events(sessions, inquiry_id: int) -> list[AuditEvent]:
    with session_scope(sessions) as s:
        rows = [e for e in s.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()
                if e.data.get("inquiry_id") == inquiry_id]
        s.expunge_all()
        return rows


def test_r6_1_an_inquiry_on_a_case_from_opening_to_decision(api, seeded, domain, clock):
    """R6.1, R7.7, A1: open on a work order -> the unit's task with its working-day limit -> late ->
    urged once by the sweep -> explained (late) -> findings and decision -> closed; each step audited."""
    number, wo_id = _dispatched(api)
    inq = ok(_open(api, work_order_id=wo_id, working_days=3), 201)
    assert (inq["unit_code"], inq["case_number"], inq["case_title"], inq["status"]) == (
        "water_supply", number, "水压低", "asked")
    # 3 working days from Mon 03-02, the day of opening not counted (T4): Thu 03-05 17:30 = 09:30 UTC
    assert inq["explanation_due_at"] == "2026-03-05T09:30:00Z"

    tasks = ok(api.get("/api/v1/inquiries?status=asked", "water1"))
    assert [(t["id"], t["explanation_due_at"], t["overdue"]) for t in tasks] == [
        (inq["id"], "2026-03-05T09:30:00Z", False)]

    travel(api, clock, "2026-03-06T09:00:00")  # Friday: past the limit
    with session_scope(seeded) as s:
        assert sweep_deadlines(s, domain).urged.get("explanation_overdue") == 1
    with session_scope(seeded) as s:
        assert "explanation_overdue" not in sweep_deadlines(s, domain).urged, "once per threshold"
    late = ok(api.get(f"/api/v1/inquiries/{inq['id']}", "water1"))
    assert (late["overdue"], late["urge_count"]) == (True, 1)
    with session_scope(seeded) as s:
        (notice,) = s.execute(select(UnitNotification).where(UnitNotification.kind == "inquiry_urge")).scalars()
        assert notice.recipient_name and notice.unit_id == s.execute(
            select(MemberUnit.id).where(MemberUnit.code == "water_supply")).scalar_one(), "to its duty staff (R5.3)"

    explained = ok(api.post(f"/api/v1/inquiries/{inq['id']}/explanation", "water1",
                            json={"explanation": "值班人员休假，未及时签收"}))
    assert (explained["status"], explained["explanation_met"]) == ("explained", False)
    decided = ok(api.post(f"/api/v1/inquiries/{inq['id']}/decision", "sup1",
                          json={"findings": "告知超时一个工作日，情况属实", "decision": "criticism"}))
    assert (decided["status"], decided["decision"], decided["findings"]) == ("closed", "criticism", "告知超时一个工作日，情况属实")
    refused(api.post(f"/api/v1/inquiries/{inq['id']}/decision", "sup1",
                     json={"findings": "再次", "decision": "notice"}), 409, "R6.1")

    events = _events(seeded, inq["id"])
    assert [(e.action, e.actor_name) for e in events] == [
        ("inquiry_open", "sup1"), ("inquiry_urge", "scheduler"), ("inquiry_explain", "water1"),
        ("inquiry_decide", "sup1")]
    assert all(e.case_id is not None and e.work_order_id == wo_id for e in events)
    assert events[-1].data["decision"] == "criticism"
    chain_verified(seeded)


def test_r6_1_an_inquiry_on_a_unit_without_a_case(api, seeded):
    """R6.1: staff conduct at a unit, no case; supervision waits for the explanation or the limit."""
    inq = ok(_open(api, reason="staff_conduct", unit_code="urban_management", description="群众反映窗口人员态度差",
                   working_days=5), 201)
    assert (inq["case_number"], inq["case_title"], inq["work_order_id"]) == (None, None, None)
    assert [t["id"] for t in ok(api.get("/api/v1/inquiries", "urban1"))] == [inq["id"]]
    refused(api.post(f"/api/v1/inquiries/{inq['id']}/decision", "sup1",
                     json={"findings": "无", "decision": "none"}), 409, "R6.1")  # the unit may still explain
    ok(api.post(f"/api/v1/inquiries/{inq['id']}/explanation", "urban1", json={"explanation": "已核实并约谈当事人"}))
    done = ok(api.post(f"/api/v1/inquiries/{inq['id']}/decision", "sup1",
                       json={"findings": "反映不实", "decision": "none"}))
    assert (done["status"], done["decision"], done["explanation_met"]) == ("closed", "none", True)
    assert [e.action for e in _events(seeded, inq["id"])] == ["inquiry_open", "inquiry_explain", "inquiry_decide"]


def test_r6_1_only_supervision_opens_and_decides_and_a_unit_sees_only_its_own(api):
    """R6.1, R5.3: units, the front desk and the back office cannot open or decide; another unit
    neither lists nor reads an inquiry; only the unit concerned explains."""
    _, wo_id = _dispatched(api)
    for who in ("water1", "op1", "bo1"):
        refused(_open(api, who, work_order_id=wo_id), 403, "R6.1")
    inq = ok(_open(api, work_order_id=wo_id), 201)
    path = f"/api/v1/inquiries/{inq['id']}"
    assert ok(api.get("/api/v1/inquiries", "urban1")) == []
    assert ok(api.get("/api/v1/inquiries", "op1")) == []
    for who in ("urban1", "op1"):
        refused(api.get(path, who), 403, "R6.1")
    refused(api.post(f"{path}/explanation", "urban1", json={"explanation": "不是我们"}), 403, "R6.1")
    refused(api.post(f"{path}/explanation", "sup1", json={"explanation": "代为说明"}), 403, "R6.1")
    refused(api.post(f"{path}/decision", "water1", json={"findings": "无过错", "decision": "none"}), 403, "R6.1")
    refused(api.post(f"{path}/decision", "bo1", json={"findings": "无过错", "decision": "none"}), 403, "R6.1")
    refused(api.get("/api/v1/inquiries/counts?start=2026-03-01T00:00:00Z&end=2026-04-01T00:00:00Z", "water1"),
            403, "R6.1")
    # the back office reads them (it assesses units, R5.2)
    assert [t["id"] for t in ok(api.get("/api/v1/inquiries", "bo1"))] == [inq["id"]]
    # a unit that never held one of the case's orders cannot be asked about it
    number = inq["case_number"]
    refused(_open(api, case_number=number, unit_code="urban_management"), 422, "R6.1")


def test_r7_3c_an_inquiry_on_a_discipline_case_shows_no_content(api, seeded):
    """R7.3c: the inquiry names the case by number only for anyone but the discipline commission,
    and no free text about it enters the shared audit log."""
    c = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "landline", "title": f"举报{CANARY}", "description": f"某局长{CANARY}",
        "category_code": "discipline_economic", "citizen_phone": "13900009999"}), 201)
    ok(api.post(f"/api/v1/cases/{c['number']}/dispatch", "op1", json={}))
    inq = ok(_open(api, case_number=c["number"], unit_code="discipline_commission",
                   description="请说明办理进度"), 201)
    for who in ("sup1", "bo1"):
        assert CANARY not in api.get(f"/api/v1/inquiries/{inq['id']}", who).text, who
        assert CANARY not in api.get("/api/v1/inquiries", who).text, who
    assert inq["case_number"] == c["number"] and CANARY not in inq["case_title"]
    assert CANARY in ok(api.get(f"/api/v1/inquiries/{inq['id']}", "disc1"))["case_title"]
    ok(api.post(f"/api/v1/inquiries/{inq['id']}/explanation", "disc1", json={"explanation": f"已立案{CANARY}"}))
    # the commission's explanation speaks of the case: its alone, like the case's answer
    assert CANARY not in api.get(f"/api/v1/inquiries/{inq['id']}", "sup1").text
    assert CANARY in ok(api.get(f"/api/v1/inquiries/{inq['id']}", "disc1"))["explanation"]
    for e in _events(seeded, inq["id"]):
        assert not {"description", "explanation", "findings"} & set(e.data), e.action


def test_r6_1_open_and_decided_inquiries_are_counted_per_unit(api, seeded):
    """R6.1 (supervision takes part in the assessment): per unit, opened / still open / decided by
    decision in a period; an inquiry on an R7.3c case is not assessed (R7.3c)."""
    _, water_wo = _dispatched(api)
    _, urban_wo = _dispatched(api, "urban_management")
    a = ok(_open(api, work_order_id=water_wo), 201)
    ok(_open(api, reason="untrue_report", unit_code="water_supply"), 201)  # stays open
    b = ok(_open(api, work_order_id=urban_wo), 201)
    d = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "landline", "title": "举报", "description": "经济问题",
        "category_code": "discipline_economic", "citizen_phone": "13900009999"}), 201)
    ok(api.post(f"/api/v1/cases/{d['number']}/dispatch", "op1", json={}))
    ok(_open(api, case_number=d["number"], unit_code="discipline_commission"), 201)
    for inq, unit, decision in ((a, "water1", "criticism"), (b, "urban1", "none")):
        ok(api.post(f"/api/v1/inquiries/{inq['id']}/explanation", unit, json={"explanation": "说明"}))
        ok(api.post(f"/api/v1/inquiries/{inq['id']}/decision", "sup1", json={"findings": "查明", "decision": decision}))

    march = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    with session_scope(seeded) as s:
        codes = {uid: code for uid, code in s.execute(select(MemberUnit.id, MemberUnit.code))}
        counts = {codes[uid]: c for uid, c in inquiry_counts(s, *march).items()}
        assert set(counts) == {"water_supply", "urban_management"}  # the R7.3c one is not assessed
        assert (counts["water_supply"].opened, counts["water_supply"].open, counts["water_supply"].decided) == (2, 1, 1)
        assert counts["water_supply"].by_decision == {"criticism": 1}
        assert (counts["urban_management"].opened, counts["urban_management"].decided) == (1, 1)
        assert counts["urban_management"].by_decision == {"none": 1}
        assert "discipline_commission" in {codes[u] for u in inquiry_counts(s, *march, include_confidential=True)}
        assert inquiry_counts(s, datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)) == {}
        assert len(s.execute(select(Inquiry)).scalars().all()) == 4
    listed = ok(api.get("/api/v1/inquiries/counts?start=2026-03-01T00:00:00Z&end=2026-04-01T00:00:00Z", "sup1"))
    assert [(r["unit_code"], r["opened"], r["open"], r["decided"]) for r in listed] == [
        ("urban_management", 1, 0, 1), ("water_supply", 2, 1, 1)]


def test_t1_r6_1_a_provisional_explanation_limit_is_corrected_with_the_arrangement(own, clock, sessions):
    """T1, R6.1: an explanation limit counted into a year with no published arrangement is
    provisional, and counted again (audited) when the arrangement is entered."""
    api = own
    travel(api, clock, "2026-12-28T10:00")
    inq = ok(_open(api, reason="staff_conduct", unit_code="water_supply", working_days=5), 201)
    # statutory count: 12-29, 12-30, 12-31, (01-01 holiday, weekend) 01-04, 01-05 -> Tue 01-05 17:30
    assert (inq["explanation_due_at"], inq["provisional_deadlines"]) == ("2027-01-05T09:30:00Z", ["explanation_due_at"])
    ok(api.put("/api/v1/calendar/2027", "admin1", json=ARRANGEMENT))  # Saturday 01-02 becomes a working day
    inq = ok(api.get(f"/api/v1/inquiries/{inq['id']}", "sup1"))
    assert (inq["explanation_due_at"], inq["provisional_deadlines"]) == ("2027-01-04T09:30:00Z", [])
    (event,) = [e for e in _events(sessions, inq["id"]) if e.action == "deadline_corrected"]
    moved = event.data["changes"]["explanation_due_at"]
    assert datetime.fromisoformat(moved["to"]) == datetime(2027, 1, 4, 9, 30, tzinfo=UTC)
