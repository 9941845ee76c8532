"""Behaviour kept while every workflow operation moves to decide-then-apply (issue 10): a second
scripted day covering the operations tests/test_store_golden.py's day does not (R4.1 take, R7.3f
consent, R7.4 live outcome, re-dispatch, provisional close, denied extension and return, approval
inside a unit, merge and the merged citizen's callback, manual callbacks, web rating, inquiries)
gives the same responses, rows, audit events and hashes as the tree before the move (A1, A2, R7-R8).

tests/golden/store_operations.json was written by this test on the tree before the move
(`CALLCENTER_GOLDEN_WRITE=tests/golden/store_operations.json pytest tests/test_store_golden_ops.py`).
"""
from __future__ import annotations

from pathlib import Path

from callcenter.auth import create_user
from tests.conftest import PASSWORD
from tests.helpers import close_case, ok, report_back, travel
from tests.test_store_golden import fixed_audit_key, same_as_golden  # noqa: F401 (fixture)
from ticketing.audit import SYSTEM
from ticketing.store import session_scope

GOLDEN = Path(__file__).parent / "golden" / "store_operations.json"
TABLES = ("cases", "work_orders", "extension_requests", "unit_notifications", "audit_events", "audit_head",
          "report_submissions", "case_merges", "inquiries")


def day(api, clock, domain, sessions) -> list:
    seen = []

    def call(method, path, who, status=200, **kw):
        body = ok(getattr(api, method)(path, who, **kw), status)
        seen.append(body)
        return body

    def new(who, **body):
        body = {"kind": "consultation", "channel": "landline", "title": "咨询", "description": "问题",
                "citizen_phone": "13800000001", **body}
        return call("post", "/api/v1/cases", who, 201, json=body)

    def version(number):
        return ok(api.get(f"/api/v1/cases/{number}", "bo1"))["version"]

    def worked(wo, who, answer="已办理", **kw):
        call("post", f"/api/v1/work-orders/{wo}/receive", who)
        call("post", f"/api/v1/work-orders/{wo}/notify", who, json={"channel": "phone"})
        seen.append(ok(report_back(api, wo, who, answer=answer, **kw)))

    travel(api, clock, "2026-03-02T09:00")
    with session_scope(sessions) as s:
        for username, unit, leader in (("edu1", "education", False), ("edu_lead", "education", True)):
            create_user(s, username=username, password=PASSWORD, role="unit_staff", unit_code=unit,
                        unit_leader=leader, now=domain.clock())

    # R4.1: a case the back office took in gets its first-contact operator
    g = new("bo1", title="路灯不亮")
    call("post", f"/api/v1/cases/{g['number']}/take", "op1")

    # R7.3f consent, transfer, R7.4 live outcome not rated, closed on report
    h = new("op1", kind="urgent_help", channel="mobile", category_code="life_service", title="开锁",
            description="钥匙锁在家里")
    call("post", f"/api/v1/cases/{h['number']}/consent", "op1", json={"disclaimer_read": True, "consent": False})
    call("post", f"/api/v1/cases/{h['number']}/consent", "op1", json={"disclaimer_read": True, "consent": True})
    call("post", f"/api/v1/cases/{h['number']}/dispatch", "op1", json={})
    call("post", f"/api/v1/cases/{h['number']}/live-outcome", "op1",
         json={"answer": "已转接便民服务中心", "satisfaction": "not_rated"})
    seen.append(ok(close_case(api, h["number"], "op1")))
    # R7.3g three-way call rated live
    i = new("op1", kind="urgent_help", channel="mobile", category_code="natural_disaster", title="树木倒伏",
            description="大树压住道路")
    call("post", f"/api/v1/cases/{i['number']}/dispatch", "op1", json={"units": ["emergency_office"], "mode": "three_way"})
    call("post", f"/api/v1/cases/{i['number']}/live-outcome", "op1", json={"answer": "已清理", "satisfaction": "satisfied"})

    # Article 5 (二) 6: submitted, sent back, submitted again, approved
    j = new("op1", channel="mobile", title="入学咨询", description="需要哪些材料？")
    j_wo = call("post", f"/api/v1/cases/{j['number']}/dispatch", "op1", json={"units": ["education"]})["work_orders"][0]["id"]
    worked(j_wo, "edu1", answer="带户口本", satisfaction="satisfied")
    call("post", f"/api/v1/work-orders/{j_wo}/report/send-back", "edu_lead",
         json={"note": "补充报名时间", "expected_version": version(j["number"])})
    seen.append(ok(report_back(api, j_wo, "edu1", answer="带户口本，9月1日报名", satisfaction="satisfied")))
    call("post", f"/api/v1/work-orders/{j_wo}/report/approve", "edu_lead", json={"expected_version": version(j["number"])})

    # Denied extension and return; unsatisfied callback, re-dispatch, provisional close
    travel(api, clock, "2026-03-03T10:00")
    k = new("op2", kind="complaint", title="噪音", description="夜间施工", category_code="water_supply")
    k_wo = call("post", f"/api/v1/cases/{k['number']}/dispatch", "op2", json={})["work_orders"][0]["id"]
    ext = call("post", f"/api/v1/work-orders/{k_wo}/extensions", "water1", 201,
               json={"legal_basis": "《供水条例》第十条", "extra_working_days": 3})
    call("post", f"/api/v1/extensions/{ext['id']}/decision", "bo1", json={"approve": False, "note": "不同意"})
    call("post", f"/api/v1/work-orders/{k_wo}/return", "water1", json={"reason": "不属于本单位职责"})
    call("post", f"/api/v1/work-orders/{k_wo}/return/decision", "bo1", json={"approve": False, "note": "请继续办理"})
    worked(k_wo, "water1", answer="已协调")
    travel(api, clock, "2026-03-05T10:00")
    call("post", f"/api/v1/cases/{k['number']}/callback", "op2", json={"satisfaction": "unsatisfied", "note": "未解决"})
    k = call("post", f"/api/v1/cases/{k['number']}/dispatch", "bo1",
             json={"units": ["urban_management"], "expected_version": version(k["number"])})
    worked(next(w["id"] for w in k["work_orders"] if w["round"] == 2), "urban1", answer="已停工")
    call("post", f"/api/v1/cases/{k['number']}/callback", "op2", json={"satisfaction": "unsatisfied"})
    seen.append(ok(close_case(api, k["number"], "bo1", provisional=True, note="已尽力")))

    # 并单, the merged citizen's callback; manual callbacks, one at a time and several; web rating
    m = new("op1", kind="complaint", title="停水", description="人民路停水", citizen_phone="13900000009",
            category_code="water_supply")
    dup = new("op1", kind="complaint", title="又停水了", description="人民路停水", citizen_phone="13900000008",
              category_code="water_supply")
    call("post", f"/api/v1/cases/{dup['number']}/merge", "bo1", json={"into": m["number"], "expected_version": dup["version"]})
    m_wo = call("post", f"/api/v1/cases/{m['number']}/dispatch", "op1", json={})["work_orders"][0]["id"]
    worked(m_wo, "water1", answer="已恢复供水")
    n = new("op2", title="燃气", description="燃气费", category_code="water_supply")
    n_wo = call("post", f"/api/v1/cases/{n['number']}/dispatch", "op2", json={})["work_orders"][0]["id"]
    worked(n_wo, "water1", answer="已答复")
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        wf.record_merged_callback(SYSTEM, wf.get_case(dup["number"]), satisfaction="basically_satisfied", note="邻居")
        wf.mark_callback_manual(SYSTEM, wf.get_case(m["number"]), reason="无人接听")
        wf.mark_callback_manual_many(SYSTEM, {wf.get_case(n["number"]).id: "号码空号"})
        wf.record_web_rating(SYSTEM, wf.get_case(m["number"]), satisfaction="satisfied")
    # R7.7 urge with a threshold, as the scheduler does
    p = new("op1", title="路面破损", description="坑洼", category_code="water_supply")
    p_wo = call("post", f"/api/v1/cases/{p['number']}/dispatch", "op1", json={})["work_orders"][0]["id"]
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        wf.urge(SYSTEM, wf.get_work_order(p_wo), threshold="report_half")

    # R6.1 inquiries: opened on a work order, explained, urged, decided
    inq = call("post", "/api/v1/inquiries", "sup1", 201, json={"reason": "overdue", "description": "请说明",
                                                           "work_order_id": p_wo})
    call("post", f"/api/v1/inquiries/{inq['id']}/urge", "sup1", 201, json={"note": "请尽快说明"})
    call("post", f"/api/v1/inquiries/{inq['id']}/explanation", "water1", json={"explanation": "人手不足"})
    call("post", f"/api/v1/inquiries/{inq['id']}/decision", "sup1", json={"findings": "属实", "decision": "criticism"})

    # re-dispatch while the unit works: its work order is cancelled (R7.3)
    call("post", f"/api/v1/cases/{p['number']}/dispatch", "bo1",
         json={"units": ["urban_management", "water_supply"], "lead": "water_supply",
               "expected_version": version(p["number"])})

    for number in (g["number"], h["number"], i["number"], j["number"], k["number"], m["number"], dup["number"],
                   n["number"], p["number"]):
        call("get", f"/api/v1/cases/{number}", "bo1")
        call("get", f"/api/v1/cases/{number}/events", "bo1")
    return seen


def test_a1_every_workflow_operation_gives_the_same_answers_rows_and_hashes(api, clock, engine, domain, seeded):
    same_as_golden(engine, day(api, clock, domain, seeded), GOLDEN, TABLES)
