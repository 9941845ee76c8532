"""Whole lives of cases through the HTTP API, as the people of each role live them.

Each test walks one case (or a few) from intake to close and checks, at every step, what the
regulation says must hold. The clock is the fixture's FakeClock (Shanghai local times below).
"""
from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy import select

from ticketing.models import AuditEvent
from tests.helpers import close_case, local, ok, refused, report_back, travel, when

SH = ZoneInfo("Asia/Shanghai")
PHONE = "13812345678"
ID_NUMBER = "32028219900101123X"
NAME = "张三丰"


# ---- helpers ---------------------------------------------------------------------------------


def new_case(api, as_: str = "op1", **fields) -> dict:
    body = {"kind": "consultation", "channel": "landline", "title": "停水咨询",
            "description": "宜城街道某小区停水，何时恢复？", "citizen_phone": PHONE}
    body.update(fields)
    return ok(api.post("/api/v1/cases", as_, json=body), 201)


def dispatch(api, number: str, as_: str = "op1", **body) -> dict:
    return ok(api.post(f"/api/v1/cases/{number}/dispatch", as_, json=body))


def case(api, number: str, as_: str = "op1") -> dict:
    return ok(api.get(f"/api/v1/cases/{number}", as_))


def wo_of(case_body: dict, unit: str, round_: int | None = None) -> dict:
    found = [w for w in case_body["work_orders"] if w["unit_code"] == unit
             and (round_ is None or w["round"] == round_)]
    assert len(found) == 1, case_body["work_orders"]
    return found[0]


def handle(api, wo_id: int, user: str, answer: str = "已按规定处理并答复诉求人", satisfaction: str | None = "satisfied") -> dict:
    """A unit's whole Article 8: receive (if not yet), notify, report."""
    if ok(api.get(f"/api/v1/work-orders/{wo_id}", user))["status"] == "dispatched":
        ok(api.post(f"/api/v1/work-orders/{wo_id}/receive", user))
    ok(api.post(f"/api/v1/work-orders/{wo_id}/notify", user, json={"channel": "phone"}))
    return ok(report_back(api, wo_id, user, answer=answer, satisfaction=satisfaction))


# ---- consultation: intake to publication (R7.1-R7.6, R8.1-R8.4) ----------------------------
def test_r7_6_consultation_life_from_intake_to_publication_without_personal_data(api, clock):
    c = new_case(api, kind="consultation", channel="landline", title=f"停水咨询{PHONE}",
                 description=f"我家住宜城街道，电话{PHONE}，身份证{ID_NUMBER}，小区停水何时恢复？",
                 citizen_name=NAME, citizen_phone=PHONE, citizen_id_number=ID_NUMBER)
    number = c["number"]
    assert c["status"] == "new" and c["owner"] == "op1"  # R4.1

    c = dispatch(api, number, units=["water_supply"])
    assert c["status"] == "dispatched"
    wo = wo_of(c, "water_supply")
    assert wo["role"] == "sole" and wo["status"] == "dispatched" and wo["round"] == 1
    # Monday 09:00: 5 working days, 17:30 (R8.3, T4); callback and close 2 calendar days later.
    assert when(wo["report_due_at"]) == local("2026-03-09T17:30")
    assert when(c["deadline_at"]) == local("2026-03-09T17:30")
    assert when(c["callback_due_at"]) == local("2026-03-11T17:30")
    assert when(c["close_due_at"]) == local("2026-03-11T17:30")

    travel(api, clock, "2026-03-03T10:00")
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/receive", "water1"))
    w = ok(api.post(f"/api/v1/work-orders/{wo['id']}/notify", "water1", json={"channel": "phone"}))
    assert w["status"] == "notified" and w["notify_met"] is True
    # The callback waits for the report (R7.4); the case cannot be closed yet (R7.5).
    refused(api.post(f"/api/v1/cases/{number}/callback", "op1", json={"satisfaction": "satisfied"}), 409, "R7.4")
    refused(close_case(api, number, "op1"), 409, "R7.5")

    travel(api, clock, "2026-03-05T15:00")
    w = ok(report_back(api, wo['id'], "water1", answer=f"已电话{PHONE}联系诉求人，管网抢修完毕，今晚恢复供水", satisfaction="satisfied"))
    assert w["status"] == "reported" and w["report_met"] is True  # R8.4
    c = case(api, number)
    assert c["status"] == "reported" and "管网抢修完毕" in c["answer"]

    travel(api, clock, "2026-03-10T09:30")
    c = ok(api.post(f"/api/v1/cases/{number}/callback", "op1", json={"satisfaction": "satisfied"}))
    assert c["status"] == "awaiting_close" and c["callback_met"] is True
    assert c["satisfaction"] == "satisfied" and c["satisfaction_source"] == "callback"
    refused(api.post(f"/api/v1/cases/{number}/publish", "bo1", json={}), 409, "R7.6")  # not closed yet
    c = ok(close_case(api, number, "op1"))
    assert c["status"] == "closed" and c["close_met"] is True and c["closed_provisionally"] is False

    refused(api.post(f"/api/v1/cases/{number}/publish", "op1", json={}), 403, "R5.2")  # the back office publishes
    c = ok(api.post(f"/api/v1/cases/{number}/publish", "bo1", json={}))
    assert c["published_at"] is not None

    # R7.6: content, times, answer and satisfaction online; phone, ID number and name never.
    r = api.client.get("/api/v1/public/cases")
    assert r.status_code == 200
    published = [p for p in r.json() if p["number"] == number]
    assert len(published) == 1
    p = published[0]
    assert "小区停水何时恢复" in p["summary"] and "管网抢修完毕" in p["answer"]
    assert p["satisfaction"] == "satisfied" and p["notified_at"] and p["closed_at"] and p["accepted_at"]
    html = api.client.get("/public").text
    assert number in html and "管网抢修完毕" in html
    for text in (r.text, html):
        assert PHONE not in text and ID_NUMBER not in text and NAME not in text
        assert "5678" not in text.replace(number, "")  # not even the tail of the phone number
    assert not {"citizen_phone", "citizen_name", "citizen_id_number"} & set(p)

    assert ok(api.get("/api/v1/audit/verify", "sup1"))["ok"] is True


# ---- return (R8.6) ---------------------------------------------------------------------------
def test_r8_6_returned_work_order_goes_back_to_dispatch_and_a_new_unit_answers(api, clock):
    number = new_case(api, kind="complaint", title="占道经营", description="某路口夜市占道经营，影响通行")["number"]
    c = dispatch(api, number, units=["housing_construction"])
    wrong = wo_of(c, "housing_construction")
    ok(api.post(f"/api/v1/work-orders/{wrong['id']}/receive", "housing1"))

    travel(api, clock, "2026-03-03T11:00")
    # A reason is required (R8.6).
    r = api.post(f"/api/v1/work-orders/{wrong['id']}/return", "housing1", json={"reason": ""})
    assert r.status_code == 422, r.text
    w = ok(api.post(f"/api/v1/work-orders/{wrong['id']}/return", "housing1",
                    json={"reason": "占道经营属城管职责，不属本单位职能"}))
    assert w["status"] == "return_requested"
    # Only the center decides; the unit cannot approve its own return.
    refused(api.post(f"/api/v1/work-orders/{wrong['id']}/return/decision", "housing1", json={"approve": True}), 403, "R8.6")
    w = ok(api.post(f"/api/v1/work-orders/{wrong['id']}/return/decision", "bo1", json={"approve": True, "note": "同意退回"}))
    assert w["status"] == "returned"
    c = case(api, number, "bo1")
    assert c["status"] == "pending_back_office"
    assert when(c["dispatch_due_at"]) == local("2026-03-06T17:30")  # 3 calendar days (R7.3, T2)
    # The returning unit can no longer act on it.
    refused(api.post(f"/api/v1/work-orders/{wrong['id']}/notify", "housing1", json={"channel": "phone"}), 409, "R8.2")

    c = dispatch(api, number, "bo1", units=["urban_management"], instructions="请城管局办理",
                 expected_version=c["version"])  # a re-dispatch names the version it acted on
    assert c["status"] == "dispatched" and c["dispatch_met"] is True
    right = wo_of(c, "urban_management")
    assert right["round"] == 2 and right["role"] == "sole"
    assert wo_of(c, "housing_construction")["status"] == "returned"
    handle(api, right["id"], "urban1", answer="已取缔占道夜市")
    c = case(api, number)
    assert c["status"] == "reported" and c["answer"] == "已取缔占道夜市"


def test_r8_6_denied_return_leaves_the_work_order_with_the_unit(api, clock):
    number = new_case(api, kind="complaint", title="噪音扰民", description="工地夜间施工噪音")["number"]
    wo = wo_of(dispatch(api, number, units=["housing_construction"]), "housing_construction")
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/receive", "housing1"))
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/return", "housing1", json={"reason": "应由生态环境局处理"}))
    w = ok(api.post(f"/api/v1/work-orders/{wo['id']}/return/decision", "op1",
                    json={"approve": False, "note": "夜间施工许可属住建职责"}))
    assert w["status"] == "received"
    c = case(api, number)
    assert c["status"] == "dispatched" and len(c["work_orders"]) == 1
    w = handle(api, wo["id"], "housing1", answer="已责令工地停止夜间施工")
    assert w["status"] == "reported"
    assert case(api, number)["status"] == "reported"


def test_r8_6_return_after_two_working_days_is_refused(api, clock):
    number = new_case(api)["number"]  # Monday 2026-03-02 09:00
    wo = wo_of(dispatch(api, number, units=["housing_construction"]), "housing_construction")
    assert when(wo["return_due_at"]) == local("2026-03-04T17:30")
    travel(api, clock, "2026-03-05T09:00")
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/receive", "housing1"))
    refused(api.post(f"/api/v1/work-orders/{wo['id']}/return", "housing1", json={"reason": "不属本单位职能"}), 409, "R8.6")
    assert ok(api.get(f"/api/v1/work-orders/{wo['id']}", "housing1"))["status"] == "received"


def test_r8_6_r7_3h_approved_return_of_one_of_several_units_leaves_the_case_with_the_others_answer(api, clock):
    number = new_case(api, kind="complaint", title="道路积水", description="暴雨后道路积水严重")["number"]
    c = dispatch(api, number, "bo1", units=["urban_management", "water_supply"])
    urban, water = wo_of(c, "urban_management"), wo_of(c, "water_supply")
    handle(api, urban["id"], "urban1", answer="已疏通雨水管网")
    assert case(api, number)["status"] == "dispatched"  # still waiting for the water company
    ok(api.post(f"/api/v1/work-orders/{water['id']}/return", "water1", json={"reason": "雨水管网不属供水公司"}))
    ok(api.post(f"/api/v1/work-orders/{water['id']}/return/decision", "bo1", json={"approve": True}))
    # Nobody is left to answer: the case is answered by the unit that did, not left waiting.
    c = case(api, number)
    assert c["status"] == "reported" and c["answer"] == "已疏通雨水管网"
    assert ok(api.post(f"/api/v1/cases/{number}/callback", "op1", json={"satisfaction": "satisfied"}))["status"] == "awaiting_close"


# ---- extension (R8.5) ------------------------------------------------------------------------
def _dispatched_consultation(api, unit: str = "water_supply") -> tuple[str, dict]:
    number = new_case(api)["number"]
    return number, wo_of(dispatch(api, number, units=[unit]), unit)


def test_r8_5_approved_extension_moves_report_due_and_case_deadlines(api, clock):
    number, wo = _dispatched_consultation(api)
    assert when(wo["report_due_at"]) == local("2026-03-09T17:30")
    # The rule that allows the longer limit must be cited.
    r = api.post(f"/api/v1/work-orders/{wo['id']}/extensions", "water1", json={"legal_basis": "", "extra_working_days": 3})
    assert r.status_code == 422, r.text
    ext = ok(api.post(f"/api/v1/work-orders/{wo['id']}/extensions", "water1",
                      json={"legal_basis": "《信访条例》第三十三条：情况复杂的可适当延长", "extra_working_days": 3}), 201)
    assert ext["state"] == "pending" and when(ext["old_due_at"]) == local("2026-03-09T17:30")
    assert ok(api.get(f"/api/v1/work-orders/{wo['id']}", "water1"))["pending_extension_id"] == ext["id"]
    assert [e["id"] for e in ok(api.get("/api/v1/extensions", "bo1"))] == [ext["id"]]
    # Units do not approve extensions; the center does.
    refused(api.post(f"/api/v1/extensions/{ext['id']}/decision", "water1", json={"approve": True}), 403, "R8.5")

    ext = ok(api.post(f"/api/v1/extensions/{ext['id']}/decision", "bo1", json={"approve": True, "note": "同意"}))
    assert ext["state"] == "approved"
    # 3 working days after Mon 03-09: 03-10, 03-11, 03-12.
    assert when(ext["new_due_at"]) == local("2026-03-12T17:30")
    c = case(api, number)
    assert when(wo_of(c, "water_supply")["report_due_at"]) == local("2026-03-12T17:30")
    assert when(c["deadline_at"]) == local("2026-03-12T17:30")
    # +2 calendar days is Saturday 03-14: the period ends on the next working day (T4).
    assert when(c["callback_due_at"]) == local("2026-03-16T17:30")
    assert when(c["close_due_at"]) == local("2026-03-16T17:30")
    # Deciding twice is refused.
    refused(api.post(f"/api/v1/extensions/{ext['id']}/decision", "bo1", json={"approve": False}), 409, "R8.5")

    # Reported on 03-11, after the old limit but within the extended one: on time.
    travel(api, clock, "2026-03-11T10:00")
    w = handle(api, wo["id"], "water1")
    assert w["report_met"] is True


def test_r8_5_denied_extension_leaves_deadlines_unchanged(api, clock):
    number, wo = _dispatched_consultation(api)
    before = case(api, number)
    ext = ok(api.post(f"/api/v1/work-orders/{wo['id']}/extensions", "water1",
                      json={"legal_basis": "《江苏省信访条例》第四十条", "extra_working_days": 5}), 201)
    ext = ok(api.post(f"/api/v1/extensions/{ext['id']}/decision", "op1", json={"approve": False, "note": "事项简单"}))
    assert ext["state"] == "denied" and ext["new_due_at"] is None
    after = case(api, number)
    for key in ("deadline_at", "callback_due_at", "close_due_at"):
        assert after[key] == before[key]
    assert when(wo_of(after, "water_supply")["report_due_at"]) == when(wo["report_due_at"])
    assert wo_of(after, "water_supply")["pending_extension_id"] is None
    # Reporting after the unextended limit is late.
    travel(api, clock, "2026-03-10T09:00")
    assert handle(api, wo["id"], "water1")["report_met"] is False


def test_r8_5_extension_still_pending_when_the_unit_reports_can_no_longer_be_approved(api, clock):
    number, wo = _dispatched_consultation(api)
    ext = ok(api.post(f"/api/v1/work-orders/{wo['id']}/extensions", "water1",
                      json={"legal_basis": "《信访条例》第三十三条", "extra_working_days": 10}), 201)
    handle(api, wo["id"], "water1")
    before = case(api, number)
    refused(api.post(f"/api/v1/extensions/{ext['id']}/decision", "bo1", json={"approve": True}), 409, "R8.5")
    after = case(api, number)
    assert (after["deadline_at"], after["callback_due_at"]) == (before["deadline_at"], before["callback_due_at"])
    # It can be denied, which clears the center's list.
    ok(api.post(f"/api/v1/extensions/{ext['id']}/decision", "bo1", json={"approve": False, "note": "已报结"}))
    assert ok(api.get("/api/v1/extensions", "bo1")) == []


# ---- unsatisfied callback (R7.5) -------------------------------------------------------------
def _reported_case(api, unit: str = "water_supply", user: str = "water1") -> tuple[str, dict]:
    number, wo = _dispatched_consultation(api, unit)
    handle(api, wo["id"], user, answer="第一次答复：正在排查")
    return number, wo


def test_r7_5_unsatisfied_case_is_closed_provisionally_by_the_back_office_only(api, clock):
    number, _ = _reported_case(api)
    c = ok(api.post(f"/api/v1/cases/{number}/callback", "op1", json={"satisfaction": "unsatisfied", "note": "仍未恢复"}))
    assert c["status"] == "unsatisfied" and c["satisfaction"] == "unsatisfied"
    assert [x["number"] for x in ok(api.get("/api/v1/cases?status=unsatisfied", "bo1"))] == [number]
    # The front desk cannot close it, not even its owner (R7.5).
    refused(close_case(api, number, "op1"), 403, "R7.5")
    refused(close_case(api, number, "op1", provisional=True), 403, "R7.5")
    # The back office closes it provisionally, never as an ordinary close.
    refused(close_case(api, number, "bo1"), 409, "R7.5")
    c = ok(close_case(api, number, "bo1", provisional=True, note="已尽力，暂结"))
    assert c["status"] == "closed" and c["closed_provisionally"] is True and c["satisfaction"] == "unsatisfied"


def test_r7_5_unsatisfied_case_redispatched_by_the_back_office_in_a_second_round(api, clock):
    number, first = _reported_case(api)
    ok(api.post(f"/api/v1/cases/{number}/callback", "op1", json={"satisfaction": "unsatisfied"}))
    # The front desk does not re-dispatch; that is the back office's (R7.5, R5.2).
    refused(api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={"units": ["water_supply"]}), 409, "R7.3")

    travel(api, clock, "2026-03-04T09:00")
    c = dispatch(api, number, "bo1", units=["water_supply"], instructions="诉求人不满意，请重新办理",
                 expected_version=case(api, number, "bo1")["version"])
    assert c["status"] == "dispatched" and c["satisfaction"] is None
    second = wo_of(c, "water_supply", round_=2)
    assert second["status"] == "dispatched" and second["id"] != first["id"]
    assert wo_of(c, "water_supply", round_=1)["status"] == "reported"
    # The new round has its own limits, counted from the re-dispatch (Wed -> Wed).
    assert when(second["report_due_at"]) == local("2026-03-11T17:30")
    assert when(c["deadline_at"]) == local("2026-03-11T17:30")

    handle(api, second["id"], "water1", answer="第二次答复：管道已更换")
    c = case(api, number)
    assert c["status"] == "reported"
    # The case's answer is this round's; the rejected first answer is not what gets published.
    assert c["answer"] == "第二次答复：管道已更换"
    c = ok(api.post(f"/api/v1/cases/{number}/callback", "op1", json={"satisfaction": "basically_satisfied"}))
    assert c["status"] == "awaiting_close"
    c = ok(close_case(api, number, "op1"))
    assert c["status"] == "closed" and c["closed_provisionally"] is False


# ---- several units (R7.3h) -------------------------------------------------------------------
def test_r7_3h_lead_answers_after_its_co_unit_reports(api, clock):
    number = new_case(api, kind="complaint", title="违章搭建", description="小区顶楼违章搭建，侵占公共空间")["number"]
    # The front desk may not dispatch to several units: the back office names the lead.
    refused(api.post(f"/api/v1/cases/{number}/dispatch", "op1",
                     json={"units": ["urban_management", "natural_resources"], "lead": "urban_management"}), 403, "R7.3h")
    ok(api.post(f"/api/v1/cases/{number}/escalate", "op1", json={"note": "涉及多部门"}))
    c = dispatch(api, number, "bo1", units=["urban_management", "natural_resources"], lead="urban_management")
    lead, co = wo_of(c, "urban_management"), wo_of(c, "natural_resources")
    assert lead["role"] == "lead" and co["role"] == "co_unit"

    ok(api.post(f"/api/v1/work-orders/{lead['id']}/receive", "urban1"))
    ok(api.post(f"/api/v1/work-orders/{lead['id']}/notify", "urban1", json={"channel": "phone"}))
    body = refused(report_back(api, lead['id'], "urban1", answer="已拆除"), 409, "R7.3h")
    assert "自然资源" in body["detail"] or "natural" in body["detail"]  # names who it waits for

    handle(api, co["id"], "nat1", answer="经核查，该搭建未取得规划许可", satisfaction=None)
    c = case(api, number)
    assert c["status"] == "dispatched"  # a co-unit reports to the lead, not to the citizen

    ok(report_back(api, lead['id'], "urban1", answer="已责令拆除违章搭建"))
    c = case(api, number)
    assert c["status"] == "reported"
    assert c["answer"] == "已责令拆除违章搭建"  # the lead answers for the case


def test_r7_3h_without_a_lead_each_unit_answers_and_the_case_waits_for_all(api, clock):
    number = new_case(api, kind="suggestion", title="公交站台与路灯", description="建议增设公交站台并修复路灯")["number"]
    c = dispatch(api, number, "bo1", units=["urban_management", "housing_construction", "water_supply"])
    orders = {w["unit_code"]: w for w in c["work_orders"]}
    assert {w["role"] for w in orders.values()} == {"independent"}
    handle(api, orders["urban_management"]["id"], "urban1", answer="路灯已修复")
    assert case(api, number)["status"] == "dispatched"
    handle(api, orders["housing_construction"]["id"], "housing1", answer="站台纳入明年计划")
    assert case(api, number)["status"] == "dispatched"
    handle(api, orders["water_supply"]["id"], "water1", answer="不涉及供水")
    c = case(api, number)
    assert c["status"] == "reported"
    for answer in ("路灯已修复", "站台纳入明年计划", "不涉及供水"):
        assert answer in c["answer"]


# ---- economic report on an official (R7.3c) --------------------------------------------------
SECRET_TITLE = "举报某局长收受红包"
SECRET_TEXT = "某局长在工程招标中收受红包二十万元"


def test_r7_3c_economic_report_goes_to_discipline_and_its_content_stays_hidden(api, clock, seeded):
    c = new_case(api, kind="complaint", channel="mobile", category_code="discipline_economic",
                 title=SECRET_TITLE, description=SECRET_TEXT, citizen_name=NAME)
    number = c["number"]
    # The operator is told what to say: passed to the discipline commission, contact 12388.
    assert "12388" in c["operator_message"] and "纪委" in c["operator_message"]
    assert c["confidential"] is True and c["callback_required"] is False and c["assessed"] is False
    # Even the accepting operator sees only the placeholder once it is saved.
    assert SECRET_TITLE not in str(c) and SECRET_TEXT not in str(c) and NAME not in str(c)

    # Never to another unit, never by phone: a work order to the discipline commission.
    refused(api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={"units": ["urban_management"]}), 409, "R7.3c")
    refused(api.post(f"/api/v1/cases/{number}/answer", "op1",
                     json={"answer": "已记录", "satisfaction": "satisfied"}), 409, "R7.3c")
    c = dispatch(api, number)  # the category's routing rule picks the unit
    wo = wo_of(c, "discipline_commission")
    assert wo["mode"] == "work_order"

    # Unit clerks elsewhere cannot even open it; the center and supervision see a placeholder.
    refused(api.get(f"/api/v1/cases/{number}", "urban1"), 403, "R5.3")
    for user in ("sup1", "op1", "op2", "bo1"):
        seen = case(api, number, user)
        assert seen["title"] == seen["description"] and seen["title"] != SECRET_TITLE
        assert SECRET_TITLE not in str(seen) and SECRET_TEXT not in str(seen)
    listed = ok(api.get("/api/v1/cases", "sup1"))
    assert number in [x["number"] for x in listed] and SECRET_TEXT not in str(listed)
    # The discipline commission reads it.
    mine = case(api, number, "disc1")
    assert mine["title"] == SECRET_TITLE and mine["description"] == SECRET_TEXT

    handle(api, wo["id"], "disc1", answer="已立案调查", satisfaction=None)
    assert case(api, number, "disc1")["answer"] == "已立案调查"
    assert "已立案调查" not in str(case(api, number, "sup1"))
    assert "已立案调查" not in str(ok(api.get("/api/v1/work-orders", "bo1")))

    # No callback, and it is closed on the report without one.
    refused(api.post(f"/api/v1/cases/{number}/callback", "op1", json={"satisfaction": "satisfied"}), 409, "R7.3c")
    c = ok(close_case(api, number, "op1"))
    assert c["status"] == "closed"
    # Kept for counting only: counted, not assessed, never published.
    assert ok(api.get("/api/v1/cases/count", "sup1")) == {"closed": 1}
    assert "discipline_commission" not in [u["code"] for u in ok(api.get("/api/v1/assessment", "sup1"))["units"]]
    refused(api.post(f"/api/v1/cases/{number}/publish", "bo1", json={}), 409, "R7.3c")
    assert api.client.get("/api/v1/public/cases").json() == []

    # The audit trail shows others that things happened, never what was said.
    events = ok(api.get(f"/api/v1/cases/{number}/events", "sup1"))
    assert {"accept", "dispatch", "report", "close"} <= {e["action"] for e in events}
    assert all(e["data"] == {} for e in events)
    with seeded() as s:
        stored = s.execute(select(AuditEvent)).scalars().all()
        raw = str([e.data for e in stored])
    assert SECRET_TITLE not in raw and SECRET_TEXT not in raw and "已立案调查" not in raw
    assert ok(api.get("/api/v1/audit/verify", "sup1"))["ok"] is True


# ---- urgent help: convenience services (R7.3f) and emergencies (R7.3g) -----------------------
def test_r7_3f_convenience_transfer_needs_the_disclaimer_and_consent_and_gets_no_callback(api, clock):
    number = new_case(api, kind="urgent_help", channel="mobile", category_code="life_service",
                      title="开锁", description="钥匙锁在家里，需要开锁")["number"]
    transfer = {"units": ["convenience_center"], "mode": "transfer"}
    refused(api.post(f"/api/v1/cases/{number}/dispatch", "op1", json=transfer), 409, "R7.3f")
    # A work order is not how life services go.
    refused(api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={"units": ["convenience_center"]}), 409, "R7.3f")
    refused(api.post(f"/api/v1/cases/{number}/consent", "op1", json={"disclaimer_read": False, "consent": True}), 409, "R7.3f")
    assert case(api, number)["convenience_consent"] is False
    c = ok(api.post(f"/api/v1/cases/{number}/consent", "op1", json={"disclaimer_read": True, "consent": False}))
    assert c["convenience_consent"] is False
    refused(api.post(f"/api/v1/cases/{number}/dispatch", "op1", json=transfer), 409, "R7.3f")

    c = ok(api.post(f"/api/v1/cases/{number}/consent", "op1", json={"disclaimer_read": True, "consent": True}))
    assert c["convenience_consent"] is True
    c = dispatch(api, number)  # by the category's rule: transfer to the convenience center
    wo = wo_of(c, "convenience_center")
    assert wo["mode"] == "transfer" and c["callback_required"] is False
    c = ok(api.post(f"/api/v1/cases/{number}/live-outcome", "op1",
                    json={"answer": "已转接便民服务中心，开锁师傅上门", "satisfaction": "not_rated"}))
    assert c["status"] == "reported" and c["callback_due_at"] is None
    refused(api.post(f"/api/v1/cases/{number}/callback", "op1", json={"satisfaction": "satisfied"}), 409, "R7.4")
    c = ok(close_case(api, number, "op1"))
    assert c["status"] == "closed"
    events = [e["action"] for e in ok(api.get(f"/api/v1/cases/{number}/events", "bo1"))]
    assert events.count("convenience_consent") == 2 and "callback" not in events


def test_r7_3g_emergency_goes_by_three_way_call_and_the_operator_rates_it(api, clock):
    number = new_case(api, kind="urgent_help", channel="mobile", category_code="natural_disaster",
                      title="树木倒伏", description="台风吹倒大树压住道路")["number"]
    refused(api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={"units": ["emergency_office"]}), 409, "R7.3g")
    refused(api.post(f"/api/v1/cases/{number}/dispatch", "op1",
                     json={"units": ["emergency_office"], "mode": "transfer"}), 409, "R7.3g")
    c = dispatch(api, number, units=["emergency_office"], mode="three_way")
    wo = wo_of(c, "emergency_office")
    assert wo["mode"] == "three_way" and wo["status"] == "notified" and wo["notify_met"] is True
    c = ok(api.post(f"/api/v1/cases/{number}/live-outcome", "op1",
                    json={"answer": "应急办已派人清理", "satisfaction": "satisfied"}))
    # R7.4: rated in the call by the operator; no callback follows.
    assert c["status"] == "awaiting_close" and c["satisfaction"] == "satisfied"
    assert c["satisfaction_source"] == "live_call" and c["callback_required"] is False
    assert wo_of(c, "emergency_office")["status"] == "reported"
    refused(api.post(f"/api/v1/cases/{number}/callback", "op1", json={"satisfaction": "satisfied"}), 409, "R7.4")
    assert ok(close_case(api, number, "op1"))["status"] == "closed"
