"""Approval inside a member unit (Article 5 (二) 6: 呈批, 审结), through the API on both databases.

The sample city's 教育局 (education) has `report_approval: true` in config/units.yaml; 供水公司
(water_supply) has not. A report back in education is a submission to the unit's leader until the
leader approves it: only then does it reach the center and get judged against R8.3.
The clock starts Monday 2026-03-02 09:00 Shanghai; a consultation is due 5 working days after
dispatch, 2026-03-09 17:30.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from callcenter.auth import create_user
from tests.conftest import PASSWORD
from tests.helpers import chain_verified, local, ok, refused, report_back, travel, when
from ticketing.models import AuditEvent, User
from ticketing.store import session_scope


@pytest.fixture
def people(seeded, domain):
    """A clerk and the leader of education, and the leader of water_supply (another unit)."""
    with session_scope(seeded) as s:
        for username, unit, leader in (("edu1", "education", False), ("edu_lead", "education", True),
                                       ("water_lead", "water_supply", True)):
            create_user(s, username=username, password=PASSWORD, role="unit_staff", unit_code=unit,
                        unit_leader=leader, now=domain.clock())
    return seeded


def notified(api, unit: str = "education", clerk: str = "edu1") -> tuple[str, int]:
    """A consultation dispatched to `unit` now, received and the citizen told; (case number, work order id)."""
    c = ok(api.post("/api/v1/cases", "op1", json={"kind": "consultation", "channel": "mobile",
                                                   "title": "入学咨询", "description": "孩子秋季入学需要哪些材料？"}), 201)
    c = ok(api.post(f"/api/v1/cases/{c['number']}/dispatch", "op1", json={"units": [unit]}))
    wo_id = c["work_orders"][0]["id"]
    ok(api.post(f"/api/v1/work-orders/{wo_id}/receive", clerk))
    ok(api.post(f"/api/v1/work-orders/{wo_id}/notify", clerk, json={"channel": "phone"}))
    return c["number"], wo_id


def version(api, number: str, as_: str = "op1") -> int:
    return ok(api.get(f"/api/v1/cases/{number}", as_))["version"]


def approve(api, wo_id: int, as_: str, number: str):
    return api.post(f"/api/v1/work-orders/{wo_id}/report/approve", as_,
                    json={"expected_version": version(api, number)})


def actions(sessions, wo_id: int) -> list[tuple[str, str]]:
    """(action, actor) of the work order's audit events from the submission on."""
    with session_scope(sessions) as s:
        rows = s.execute(select(AuditEvent.action, AuditEvent.actor_name).where(AuditEvent.work_order_id == wo_id)
                         .order_by(AuditEvent.id)).all()
    names = [tuple(r) for r in rows]
    return names[[a for a, _ in names].index("receive") + 2:]  # after receive and notify


def test_r8_3_approved_report_reaches_the_center_as_a_report_does_today(api, people, clock):
    """Article 5 (二) 6, R8.3/R8.4: the clerk's report waits for the leader; approved, the case is
    reported with its answer, judged on time, and every step is in the audit record (A1)."""
    number, wo_id = notified(api)
    wo = ok(report_back(api, wo_id, "edu1", answer="带户口本和房产证到学校报名", satisfaction="satisfied"))
    # A submission, not a report: the work order is still the unit's and the center has no answer.
    assert wo["status"] == "notified" and wo["reported_at"] is None and wo["answer"] is None
    assert wo["approval"]["state"] == "pending" and wo["approval"]["submitted_by"] == "edu1"
    assert ok(api.get(f"/api/v1/cases/{number}", "op1"))["status"] == "dispatched"
    # A second submission while one waits is refused.
    refused(report_back(api, wo_id, "edu1", answer="再交一次"), 409, "R5.3")

    (pending,) = ok(api.get("/api/v1/report-approvals", "edu_lead"))
    assert (pending["work_order_id"], pending["case_number"], pending["answer"]) == (wo_id, number, "带户口本和房产证到学校报名")
    assert pending["case_version"] == version(api, number) and pending["overdue"] is False

    # Approving applies the report: it needs the case version like a report does (issue 11 §7).
    refused(api.post(f"/api/v1/work-orders/{wo_id}/report/approve", "edu_lead", json={}), 422, "expected_version")
    clock.advance(hours=1)
    wo = ok(approve(api, wo_id, "edu_lead", number))
    assert wo["status"] == "reported" and wo["report_met"] is True and wo["approval"]["state"] == "approved"
    assert when(wo["reported_at"]) == local("2026-03-02T10:00")  # the approval, not the submission
    assert wo["answer"] == "带户口本和房产证到学校报名" and wo["reported_satisfaction"] == "satisfied"
    case = ok(api.get(f"/api/v1/cases/{number}", "op1"))
    assert case["status"] == "reported" and case["answer"] == "带户口本和房产证到学校报名"
    assert ok(api.get("/api/v1/report-approvals", "edu_lead")) == []

    assert actions(people, wo_id) == [("submit_report", "edu1"), ("approve_report", "edu_lead"),
                                      ("report", "edu_lead")]
    chain_verified(people)


def test_r8_4_sent_back_report_returns_to_the_clerk_with_the_note_then_is_approved(api, people, clock):
    """Article 5 (二) 6: sent back, the work order stays with the clerk, who reads the note and the
    kept text, edits and resubmits; approved, the edited text is the answer."""
    number, wo_id = notified(api)
    ok(report_back(api, wo_id, "edu1", answer="请到学校问"))
    refused(api.post(f"/api/v1/work-orders/{wo_id}/report/send-back", "edu_lead", json={"note": "  "}), 422,
            "invalid_input")
    wo = ok(api.post(f"/api/v1/work-orders/{wo_id}/report/send-back", "edu_lead",
                     json={"note": "答复太笼统，请写明所需材料"}))
    assert wo["status"] == "notified" and wo["answer"] is None

    mine = ok(api.get(f"/api/v1/work-orders/{wo_id}", "edu1"))["approval"]
    assert mine["state"] == "sent_back" and mine["note"] == "答复太笼统，请写明所需材料" and mine["answer"] == "请到学校问"
    assert ok(api.get("/api/v1/report-approvals", "edu_lead")) == []
    # Nothing to approve until the clerk resubmits.
    refused(approve(api, wo_id, "edu_lead", number), 409, "R5.3")
    assert ok(api.get(f"/api/v1/cases/{number}", "op1"))["status"] == "dispatched"

    ok(report_back(api, wo_id, "edu1", answer="请携带户口本、房产证到学校报名"))
    wo = ok(approve(api, wo_id, "edu_lead", number))
    assert wo["status"] == "reported" and wo["answer"] == "请携带户口本、房产证到学校报名"
    assert ok(api.get(f"/api/v1/cases/{number}", "op1"))["answer"] == "请携带户口本、房产证到学校报名"
    assert actions(people, wo_id) == [("submit_report", "edu1"), ("send_back_report", "edu_lead"),
                                      ("submit_report", "edu1"), ("approve_report", "edu_lead"),
                                      ("report", "edu_lead")]
    with session_scope(people) as s:
        note = s.execute(select(AuditEvent.data).where(AuditEvent.action == "send_back_report")).scalar_one()
    assert note["note"] == "答复太笼统，请写明所需材料"


def test_r8_3_submitted_in_time_but_approved_after_the_deadline_is_late(api, people, clock):
    """R8.3 keeps running while the leader decides: a report approved after its deadline is late,
    and counts late where timeliness (按时办结率) is counted."""
    number, wo_id = notified(api)
    travel(api, clock, "2026-03-09T17:00")
    ok(report_back(api, wo_id, "edu1", answer="已电话告知所需材料"))
    travel(api, clock, "2026-03-09T17:31")
    # Still waiting for the leader: to the center it is an overdue work order, and on the leader's list.
    assert wo_id in {w["id"] for w in ok(api.get("/api/v1/work-orders?due=overdue", "bo1"))}
    assert ok(api.get("/api/v1/report-approvals", "edu_lead"))[0]["overdue"] is True
    wo = ok(approve(api, wo_id, "edu_lead", number))
    assert wo["status"] == "reported" and wo["report_met"] is False
    assert when(wo["reported_at"]) == local("2026-03-09T17:31")
    scores = {u["code"]: u["figures"] for u in ok(api.get("/api/v1/assessment", "bo1"))["units"]}
    assert (scores["education"]["on_time"]["numerator"], scores["education"]["on_time"]["denominator"]) == (0, 1)


def test_r8_3_a_unit_without_approval_reports_straight_to_the_center(api, people, clock, domain):
    """A unit not configured for approval keeps the procedure as it was: the report is made at once."""
    assert domain.city.unit("education").report_approval is True
    assert domain.city.unit("water_supply").report_approval is False
    number, wo_id = notified(api, "water_supply", "water1")
    wo = ok(report_back(api, wo_id, "water1", answer="管网抢修，今晚恢复"))
    assert wo["status"] == "reported" and wo["report_met"] is True and wo["approval"] is None
    assert ok(api.get(f"/api/v1/cases/{number}", "op1"))["status"] == "reported"
    assert ok(api.get("/api/v1/report-approvals", "water_lead")) == []
    refused(approve(api, wo_id, "water_lead", number), 409, "R5.3")


def test_r5_3_only_the_same_units_leader_decides(api, people, clock):
    """R5.3: another unit's leader, the unit's own clerk and the center may not approve or send
    back, nor see the leader's list; the leader's own report needs no approval."""
    number, wo_id = notified(api)
    ok(report_back(api, wo_id, "edu1", answer="带户口本到学校报名"))
    for who in ("water_lead", "edu1", "bo1", "sup1"):
        refused(approve(api, wo_id, who, number), 403, "R5.3")
        refused(api.post(f"/api/v1/work-orders/{wo_id}/report/send-back", who, json={"note": "不行"}), 403, "R5.3")
        assert ok(api.get("/api/v1/report-approvals", who)) == []
    assert len(ok(api.get("/api/v1/report-approvals", "edu_lead"))) == 1

    own_number, own = notified(api, clerk="edu_lead")
    wo = ok(report_back(api, own, "edu_lead", answer="局长亲自答复"))
    assert wo["status"] == "reported" and wo["approval"] is None


def test_r5_3_only_a_member_units_staff_can_be_its_leader(people, domain):
    """The leader flag belongs to a unit's own staff; a center role cannot carry it."""
    from ticketing.errors import InvalidInput

    with session_scope(people) as s:
        with pytest.raises(InvalidInput):
            create_user(s, username="bo_lead", password=PASSWORD, role="back_office", unit_leader=True,
                        now=domain.clock())
        assert s.execute(select(User.is_unit_leader).where(User.username == "edu_lead")).scalar_one() is True


def test_r5_3_an_administrator_names_a_units_leader_through_the_api(api, people):
    """The leader flag is set with the account (or a role change) and only on a unit's staff."""
    user = ok(api.post("/api/v1/users", "admin1", json={"username": "edu_lead2", "password": PASSWORD,
                                                        "role": "unit_staff", "unit_code": "education",
                                                        "unit_leader": True}), 201)
    assert user["unit_leader"] is True
    refused(api.post("/api/v1/users/edu_lead2/role", "admin1", json={"role": "back_office", "unit_leader": True}),
            422, "R5.3")
    ok(api.post("/api/v1/users/edu_lead2/role", "admin1", json={"role": "unit_staff", "unit_code": "education"}))
    assert ok(api.get("/api/v1/auth/me", "edu_lead2"))["unit_leader"] is False
