"""R7.3c and R5.3 on every read: what issue 11 found reaching the wrong roles, each pinned.

R7.3c: a report on an official's economic problems is for the discipline commission alone -- its
content, the legal basis its order's extension cites, where a refused one was referred, which phone
filed it, what the call that brought it was about, and its recording. R5.3: a unit sees a case only
through a work order it holds now: not after returning it (R8.6) and the case going elsewhere."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from tests.helpers import actor_named, ok, refused
from ticketing import calls
from ticketing.models import Call, Case
from ticketing.store import session_scope

REPORTER = "13900009999"
CANARY = "绝密线索甲乙丙"
CENTER = ("op1", "bo1", "sup1", "admin1")


def discipline_report(api, **fields) -> dict:
    body = {"kind": "complaint", "channel": "landline", "title": f"举报{CANARY}", "description": f"某局长{CANARY}",
            "category_code": "discipline_economic", "citizen_phone": REPORTER}
    body.update(fields)
    return ok(api.post("/api/v1/cases", "op1", json=body), 201)


def test_r7_3c_legal_basis_of_an_extension_on_a_discipline_order_is_the_commissions_alone(api):
    c = ok(api.post(f"/api/v1/cases/{discipline_report(api)['number']}/dispatch", "op1", json={}))
    (wo,) = c["work_orders"]
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/extensions", "disc1",
                json={"legal_basis": f"《纪律检查机关监督执纪工作规则》{CANARY}", "extra_working_days": 10}), 201)
    for who in CENTER:
        listed = api.get("/api/v1/extensions", who)
        if listed.status_code == 200:
            assert CANARY not in listed.text, who
    assert CANARY in api.get("/api/v1/extensions", "disc1").text
    # the center still decides it (in principle, R8.5) without reading it
    (ext,) = ok(api.get("/api/v1/extensions", "bo1"))
    decided = ok(api.post(f"/api/v1/extensions/{ext['id']}/decision", "bo1", json={"approve": True, "note": "同意"}))
    assert CANARY not in str(decided)


def test_r7_3c_where_a_refused_report_was_referred_is_not_shown_to_the_center(api):
    number = discipline_report(api)["number"]
    ok(api.post(f"/api/v1/cases/{number}/reject", "op1",
                json={"reason": "outside_jurisdiction", "referral": f"转交省纪委{CANARY}"}))
    for who in CENTER:
        assert CANARY not in api.get(f"/api/v1/cases/{number}", who).text, who


def test_r7_3c_the_caller_filter_does_not_tell_who_reported_an_official(api):
    discipline_report(api)
    ordinary = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "consultation", "channel": "landline", "title": "水费", "description": "水费咨询",
        "citizen_phone": REPORTER}), 201)
    for who in CENTER:
        found = ok(api.get(f"/api/v1/cases?caller={REPORTER}", who))
        assert [c["number"] for c in found] == [ordinary["number"]], who


def test_r7_3c_a_calls_log_does_not_say_what_a_discipline_call_was_about(api, seeded):
    number = discipline_report(api)["number"]
    with session_scope(seeded) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        call = calls.call_row(s, uniqueid="1772420000.5", caller_number=REPORTER, started_at=datetime.now(UTC))
        calls.finish_call(s, call.id, outcome="queued", reason="complaint", ended_at=datetime.now(UTC),
                          flow_path=["greeting", "main_menu", "complaint"],
                          digits=[{"node": "main_menu", "digits": "3"}], case_id=case.id)
        call_id = call.id
    for who in ("op1", "bo1", "sup1"):
        log = ok(api.get(f"/api/v1/calls/{call_id}/log", who))
        assert log.get("confidential") is True, who
        for key in ("case_id", "digits", "flow_path", "caller_number", "events"):
            assert key not in log, (who, key)


def test_r7_3c_the_commission_hears_its_own_recordings_and_nobody_else(api, seeded):
    from callcenter.callcontrol.recording import may_listen

    number = discipline_report(api)["number"]
    with session_scope(seeded) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        call = Call(uniqueid="1772420000.9", linkedid="1772420000.9", direction="inbound", caller_number=REPORTER,
                    started_at=datetime.now(UTC), case_id=case.id, flow_path=[], digits=[])
        assert may_listen(actor_named(s, "disc1"), call, case)
        for who in ("bo1", "sup1", "admin1", "op1"):
            assert not may_listen(actor_named(s, who), call, case), who


def test_r5_3_a_unit_no_longer_reads_a_case_it_returned_once_it_went_elsewhere(api):
    c = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "mobile", "title": "楼道堆物", "description": "楼道堆物影响通行",
        "citizen_phone": "13700001234"}), 201)
    c = ok(api.post(f"/api/v1/cases/{c['number']}/dispatch", "op1", json={"units": ["housing_construction"]}))
    (wo,) = c["work_orders"]
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/return", "housing1", json={"reason": "不属于本单位职责"}))
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/return/decision", "bo1", json={"approve": True}))
    version = ok(api.get(f"/api/v1/cases/{c['number']}", "bo1"))["version"]
    ok(api.post(f"/api/v1/cases/{c['number']}/dispatch", "bo1",
                json={"units": ["urban_management"], "expected_version": version}))
    refused(api.get(f"/api/v1/cases/{c['number']}", "housing1"), 403, "R5.3")
    assert c["number"] not in api.get("/api/v1/cases", "housing1").text
    assert ok(api.get(f"/api/v1/cases/{c['number']}", "urban1"))["citizen_phone"] == "13700001234"
