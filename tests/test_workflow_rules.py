"""One rule at a time, through the HTTP API: who may do what, when, and what gets recorded.

The whole lives are in test_api_lives.py; deadlines across holidays in test_deadlines_api.py.
Clock: the fixture's FakeClock starts Monday 2026-03-02 09:00 Shanghai, when the roster is seeded.
"""
from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy import select

from ticketing.enums import Channel, RejectReason
from ticketing.models import UnitNotification
from tests.helpers import close_case, local, ok, publish_knowledge, refused, report_back, travel, when

SH = ZoneInfo("Asia/Shanghai")
PHONE = "13812345678"


# ---- helpers ---------------------------------------------------------------------------------


def new_case(api, as_: str = "op1", **fields) -> dict:
    body = {"kind": "consultation", "channel": "landline", "title": "水费咨询",
            "description": "本月水费为何翻倍？", "citizen_phone": PHONE}
    body.update(fields)
    return ok(api.post("/api/v1/cases", as_, json=body), 201)


def dispatch(api, number: str, as_: str = "op1", **body) -> dict:
    return ok(api.post(f"/api/v1/cases/{number}/dispatch", as_, json=body))


def only_wo(case_body: dict) -> dict:
    assert len(case_body["work_orders"]) == 1, case_body["work_orders"]
    return case_body["work_orders"][0]


def staff(domain, unit: str, duty: str):
    cfg = next(u for u in domain.city.units if u.code == unit)
    return next(s for s in cfg.staff if s.duty == duty)


# ---- R2.2 channels ---------------------------------------------------------------------------
def test_r2_2_every_channel_lands_in_the_same_store_and_list(api, clock):
    kinds = ["consultation", "suggestion", "complaint", "consultation", "suggestion"]
    numbers = {}
    for channel, kind in zip(Channel, kinds, strict=True):
        c = new_case(api, channel=channel.value, kind=kind, title=f"来自{channel.value}的诉求")
        assert c["channel"] == channel.value and c["status"] == "new"
        numbers[c["number"]] = channel.value
    listed = ok(api.get("/api/v1/cases", "bo1"))
    assert {c["number"]: c["channel"] for c in listed} == numbers
    assert len(set(numbers)) == 5  # one numbering for all channels
    assert ok(api.get("/api/v1/cases/count", "sup1")) == {"new": 5}
    # The same list finds a citizen's cases whatever the channel.
    assert len(ok(api.get(f"/api/v1/cases?caller={PHONE}", "op1"))) == 5


# ---- R3.1 / R3.2 not accepted ----------------------------------------------------------------
def test_r3_2_each_r3_1_reason_needs_a_referral(api, clock):
    for reason in RejectReason:
        # At intake, without a referral: refused as incomplete, nothing stored.
        r = api.post("/api/v1/cases", "op1", json={
            "kind": "complaint", "channel": "landline", "title": "不受理事项", "description": "诉求内容",
            "reject": {"reason": reason.value, "referral": "   "}})
        assert r.status_code == 422, r.text
        number = new_case(api, kind="complaint", title=f"不受理：{reason.value}")["number"]
        r = api.post(f"/api/v1/cases/{number}/reject", "op1", json={"reason": reason.value, "referral": ""})
        assert r.status_code == 422, r.text
        c = ok(api.post(f"/api/v1/cases/{number}/reject", "op1",
                        json={"reason": reason.value, "referral": "已告知向市法院咨询，电话0510-87000000"}))
        assert c["status"] == "rejected" and c["reject_reason"] == reason.value
        assert c["referral"].startswith("已告知向市法院咨询")
        assert c["callback_required"] is False and c["assessed"] is False and c["closed_at"] is not None
    # Refused at intake in one step, with the referral recorded.
    c = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "web", "title": "部队营区噪音", "description": "营区夜间训练",
        "reject": {"reason": "military_or_police", "referral": "已告知联系驻地部队"}}), 201)
    assert c["status"] == "rejected" and c["referral"] == "已告知联系驻地部队"
    assert ok(api.get("/api/v1/cases/count", "bo1")) == {"rejected": len(RejectReason) + 1}
    # An unknown ground is not a ground.
    number = new_case(api)["number"]
    r = api.post(f"/api/v1/cases/{number}/reject", "op1", json={"reason": "too_busy", "referral": "x"})
    assert r.status_code == 422, r.text
    # A rejected case is done: it cannot be dispatched afterwards.
    rejected = ok(api.get("/api/v1/cases?status=rejected", "op1"))[0]["number"]
    refused(api.post(f"/api/v1/cases/{rejected}/dispatch", "op1", json={"units": ["water_supply"]}), 409, "R7.3")


def test_r3_1_a_unit_not_joined_cannot_be_dispatched_to(api, clock):
    number = new_case(api, title="有线电视信号差", description="有线电视经常没有信号")["number"]
    for user in ("op1", "bo1"):
        body = refused(api.post(f"/api/v1/cases/{number}/dispatch", user, json={"units": ["cable_tv"]}), 409, "R3.1")
        assert "joined" in body["detail"]
    # Nothing was created by the refused dispatch.
    c = ok(api.get(f"/api/v1/cases/{number}", "op1"))
    assert c["status"] == "new" and c["work_orders"] == []
    # The operator refuses it on ground (6) and gives the unit's contact instead.
    c = ok(api.post(f"/api/v1/cases/{number}/reject", "op1",
                    json={"reason": "unit_not_joined", "referral": "已告知有线电视公司客服电话"}))
    assert c["reject_reason"] == "unit_not_joined"


# ---- R4.1 first-contact responsibility -------------------------------------------------------
def test_r4_1_another_operator_cannot_act_on_the_owners_case_but_the_back_office_can(api, clock):
    number = new_case(api, "op1")["number"]
    refused(api.post(f"/api/v1/cases/{number}/dispatch", "op2", json={"units": ["water_supply"]}), 403, "R4.1")
    refused(api.post(f"/api/v1/cases/{number}/answer", "op2",
                     json={"answer": "水价调整所致", "satisfaction": "satisfied"}), 403, "R4.1")
    refused(api.post(f"/api/v1/cases/{number}/escalate", "op2", json={}), 403, "R4.1")
    refused(api.post(f"/api/v1/cases/{number}/reject", "op2",
                     json={"reason": "cannot_be_handled", "referral": "x"}), 403, "R4.1")
    c = dispatch(api, number, "bo1", units=["water_supply"])
    assert c["status"] == "dispatched" and c["owner"] == "op1"  # ownership does not move

    wo = only_wo(c)
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/notify", "water1", json={"channel": "sms"}))
    ok(report_back(api, wo['id'], "water1", answer="水价调整所致"))
    ok(api.post(f"/api/v1/cases/{number}/callback", "op2", json={"satisfaction": "satisfied"}))
    # Closing is the owner's (or the back office's).
    refused(close_case(api, number, "op2"), 403, "R4.1")
    assert ok(close_case(api, number, "op1"))["status"] == "closed"


def test_r4_1_a_case_without_callback_is_closed_by_its_owner_only(api, clock):
    number = new_case(api, kind="complaint", category_code="discipline_economic",
                      title="举报", description="某干部经济问题")["number"]
    wo = only_wo(dispatch(api, number))
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/notify", "disc1", json={"channel": "phone"}))
    ok(report_back(api, wo['id'], "disc1", answer="已受理"))
    refused(close_case(api, number, "op2"), 403, "R4.1")
    assert ok(close_case(api, number, "op1"))["status"] == "closed"


# ---- R7.2 direct answers and the knowledge base (R5.3) ---------------------------------------
def test_r7_2_direct_answer_from_the_knowledge_base_records_satisfaction(api, clock):
    entry = ok(api.post("/api/v1/units/water_supply/knowledge", "water1", json={
        "question": "水费为何上涨？", "answer": "2026年起执行阶梯水价，详见自来水公司公告。",
        "keywords": "水费 阶梯水价", "category_code": "water_supply"}), 201)
    publish_knowledge(api, entry["id"], "water1")
    found = ok(api.get("/api/v1/knowledge", "op1", params={"q": "阶梯水价"}))
    assert [e["id"] for e in found] == [entry["id"]]
    assert ok(api.get("/api/v1/knowledge", "op1", params={"q": "燃气"})) == []

    number = new_case(api)["number"]
    # A direct answer needs the citizen's rating, taken during the call (R7.4).
    r = api.post(f"/api/v1/cases/{number}/answer", "op1",
                 json={"answer": found[0]["answer"], "satisfaction": "not_rated"})
    assert r.status_code == 422 and r.json()["error"] == "R7.4", r.text
    c = ok(api.post(f"/api/v1/cases/{number}/answer", "op1", json={
        "answer": found[0]["answer"], "satisfaction": "basically_satisfied", "knowledge_entry_id": entry["id"]}))
    assert c["status"] == "awaiting_close" and c["answered_directly"] is True
    assert c["satisfaction"] == "basically_satisfied" and c["satisfaction_source"] == "direct"
    assert c["callback_required"] is False and c["work_orders"] == []
    events = ok(api.get(f"/api/v1/cases/{number}/events", "bo1"))
    answered = [e for e in events if e["action"] == "answer_directly"]
    assert answered[0]["data"]["knowledge_entry_id"] == entry["id"]
    assert answered[0]["data"]["satisfaction"] == "basically_satisfied"
    assert ok(close_case(api, number, "op1"))["status"] == "closed"

    # Unsatisfied with the direct answer: on the back office's list (R7.5).
    other = new_case(api)["number"]
    c = ok(api.post(f"/api/v1/cases/{other}/answer", "op1", json={"answer": "阶梯水价", "satisfaction": "unsatisfied"}))
    assert c["status"] == "unsatisfied"


def test_r5_3_unit_staff_keep_only_their_own_knowledge_entries(api, clock):
    entry = ok(api.post("/api/v1/units/water_supply/knowledge", "water1", json={
        "question": "停水如何查询？", "answer": "关注自来水公司公众号。"}), 201)
    publish_knowledge(api, entry["id"], "water1")
    change = {"question": "停水如何查询？", "answer": "拨打0510-87900290或关注公众号。"}
    refused(api.put(f"/api/v1/knowledge/{entry['id']}", "urban1", json=change), 403, "R5.3")
    refused(api.post("/api/v1/units/water_supply/knowledge", "urban1", json=change), 403, "R5.3")
    refused(api.post("/api/v1/units/water_supply/knowledge", "op1", json=change), 403, "R5.3")
    r = api.client.delete(f"/api/v1/knowledge/{entry['id']}", headers={"Authorization": f"Bearer {api.login('urban1')}"})
    assert r.status_code == 403, r.text
    assert ok(api.get("/api/v1/knowledge", "op1", params={"q": "公众号"}))[0]["answer"] == "关注自来水公司公众号。"

    updated = ok(api.put(f"/api/v1/knowledge/{entry['id']}", "water1", json=change))
    assert updated["pending"]["content"]["answer"] == change["answer"]  # published once reviewed
    publish_knowledge(api, entry["id"], "water1")
    assert ok(api.get("/api/v1/knowledge", "op1", params={"unit": "water_supply"}))[0]["answer"] == change["answer"]


# ---- R7.3 when dispatch happens --------------------------------------------------------------
def test_r7_3_front_desk_dispatches_the_same_day_else_the_back_office_within_3_days(api, clock):
    late, timely = new_case(api)["number"], new_case(api)["number"]  # Monday 2026-03-02 09:00
    travel(api, clock, "2026-03-03T09:00")
    body = refused(api.post(f"/api/v1/cases/{late}/dispatch", "op1", json={"units": ["water_supply"]}), 409, "R7.3")
    assert "escalate" in body["detail"]
    for number in (late, timely):
        c = ok(api.post(f"/api/v1/cases/{number}/escalate", "op1", json={"note": "跨部门，交后台"}))
        assert c["status"] == "pending_back_office"
        # 3 calendar days from acceptance (T2): Thursday 17:30.
        assert when(c["dispatch_due_at"]) == local("2026-03-05T17:30")
    # Once with the back office, the front desk no longer dispatches it.
    refused(api.post(f"/api/v1/cases/{late}/dispatch", "op1", json={"units": ["water_supply"]}), 409, "R7.3")

    travel(api, clock, "2026-03-05T17:00")
    c = dispatch(api, timely, "bo1", units=["water_supply"])
    assert c["status"] == "dispatched" and c["dispatch_met"] is True
    travel(api, clock, "2026-03-06T09:00")
    c = dispatch(api, late, "bo1", units=["water_supply"])
    assert c["status"] == "dispatched" and c["dispatch_met"] is False

    # Accepted on Thursday: the third day is Sunday, so the period ends Monday (T4).
    travel(api, clock, "2026-03-05T10:00")
    c = ok(api.post(f"/api/v1/cases/{new_case(api)['number']}/escalate", "op1", json={}))
    assert when(c["dispatch_due_at"]) == local("2026-03-09T17:30")


# ---- R7.7 urging -----------------------------------------------------------------------------
def test_r7_7_urge_notifies_the_units_a_duty_staff_from_the_roster(api, clock, domain, seeded):
    number = new_case(api)["number"]
    wo = only_wo(dispatch(api, number, units=["water_supply"]))
    a_staff = staff(domain, "water_supply", "A")
    refused(api.post(f"/api/v1/work-orders/{wo['id']}/urge", "water1", json={}), 403, "R7.7")
    refused(api.post(f"/api/v1/work-orders/{wo['id']}/urge", "sup1", json={}), 403, "R7.7")

    travel(api, clock, "2026-03-05T10:00")
    sent = ok(api.post(f"/api/v1/work-orders/{wo['id']}/urge", "op1", json={"note": "请尽快答复"}), 201)
    assert sent["recipient"] == a_staff.name
    assert number in sent["message"] and "请尽快答复" in sent["message"]
    # The A post changes hands; the next urge goes to whoever holds it then.
    ok(api.post("/api/v1/units/water_supply/roster", "water1", json={
        "duty": "A", "name": "新值班员", "phone": "13900009999", "effective_from": "2026-03-05T10:00:00+08:00"}), 201)
    travel(api, clock, "2026-03-05T11:00")
    sent2 = ok(api.post(f"/api/v1/work-orders/{wo['id']}/urge", "bo1", json={}), 201)
    assert sent2["recipient"] == "新值班员"
    assert ok(api.get(f"/api/v1/work-orders/{wo['id']}", "op1"))["urge_count"] == 2
    with seeded() as s:
        rows = s.execute(select(UnitNotification).order_by(UnitNotification.id)).scalars().all()
        assert [(n.kind, n.recipient_name, n.recipient_phone) for n in rows] == [
            ("urge", a_staff.name, a_staff.phone), ("urge", "新值班员", "13900009999")]
        assert all(n.work_order_id == wo["id"] for n in rows)

    # A reported work order is no longer urged.
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/notify", "water1", json={"channel": "phone"}))
    ok(report_back(api, wo['id'], "water1", answer="已答复"))
    refused(api.post(f"/api/v1/work-orders/{wo['id']}/urge", "op1", json={}), 409, "R7.7")


# ---- R9.1 roster changes ---------------------------------------------------------------------
def test_r9_1_late_roster_change_is_flagged_and_history_shows_who_was_on_duty(api, clock, domain):
    old_a = staff(domain, "water_supply", "A")
    travel(api, clock, "2026-03-06T10:00")  # Friday
    # A changed on Tuesday 09:00: due Thursday 17:30 (2 working days), reported Friday: late.
    late = ok(api.post("/api/v1/units/water_supply/roster", "water1", json={
        "duty": "A", "name": "王新", "phone": "13900008888", "effective_from": "2026-03-03T09:00:00+08:00"}), 201)
    assert late["reported_late"] is True and when(late["report_due_at"]) == local("2026-03-05T17:30")
    # B changed on Thursday 09:00: due Monday 17:30, reported Friday: on time.
    timely = ok(api.post("/api/v1/units/water_supply/roster", "bo1", json={
        "duty": "B", "name": "李新", "phone": "13900007777", "effective_from": "2026-03-05T09:00:00+08:00"}), 201)
    assert timely["reported_late"] is False and when(timely["report_due_at"]) == local("2026-03-09T17:30")
    # Another unit may not touch this roster; a change not yet in effect is not reported.
    refused(api.post("/api/v1/units/water_supply/roster", "urban1", json={
        "duty": "A", "name": "某人", "phone": "13900006666", "effective_from": "2026-03-05T09:00:00+08:00"}), 403, "R9.1")
    refused(api.post("/api/v1/units/water_supply/roster", "water1", json={
        "duty": "A", "name": "某人", "phone": "13900006666", "effective_from": "2026-03-09T09:00:00+08:00"}), 422, "R9.1")

    def on_duty(at: str | None) -> dict[str, str]:
        params = {"at": at} if at else {}
        unit = ok(api.get("/api/v1/units/water_supply", "op1", params=params))
        return {d["duty"]: d["name"] for d in unit["on_duty"]}

    assert on_duty("2026-03-03T08:59:00+08:00")["A"] == old_a.name
    assert on_duty("2026-03-04T12:00:00+08:00")["A"] == "王新"
    assert on_duty("2026-03-04T12:00:00+08:00")["B"] == staff(domain, "water_supply", "B").name
    assert on_duty(None) == {"leader": next(u for u in domain.city.units if u.code == "water_supply").leader.name,
                             "A": "王新", "B": "李新"}
    history = ok(api.get("/api/v1/units/water_supply/roster", "sup1"))
    old = [h for h in history if h["name"] == old_a.name][0]
    assert when(old["valid_to"]) == local("2026-03-03T09:00")
    assert [h["reported_late"] for h in history if h["name"] in ("王新", "李新")] == [True, False]


# ---- R5.3 unit visibility, R6.1 supervision ---------------------------------------------------
def test_r5_3_unit_staff_see_only_their_own_units_work_orders_and_cases(api, clock):
    water_case = new_case(api, title="水压低")["number"]
    urban_case = new_case(api, title="路灯不亮")["number"]
    shared = new_case(api, title="道路积水", kind="complaint")["number"]
    water_wo = only_wo(dispatch(api, water_case, units=["water_supply"]))
    urban_wo = only_wo(dispatch(api, urban_case, units=["urban_management"]))
    dispatch(api, shared, "bo1", units=["water_supply", "urban_management"], lead="urban_management")

    mine = ok(api.get("/api/v1/work-orders", "water1"))
    assert {w["unit_code"] for w in mine} == {"water_supply"} and len(mine) == 2
    assert {w["case_number"] for w in ok(api.get("/api/v1/work-orders", "urban1"))} == {urban_case, shared}
    assert len(ok(api.get("/api/v1/work-orders", "bo1"))) == 4
    assert {c["number"] for c in ok(api.get("/api/v1/cases", "water1"))} == {water_case, shared}
    refused(api.get(f"/api/v1/cases/{urban_case}", "water1"), 403, "R5.3")
    refused(api.get(f"/api/v1/work-orders/{urban_wo['id']}", "water1"), 403, "R5.3")
    refused(api.post(f"/api/v1/work-orders/{urban_wo['id']}/receive", "water1"), 403, "R5.3")
    refused(api.post(f"/api/v1/cases/{water_case}/dispatch", "water1", json={"units": ["water_supply"]}), 403, "R5.1")
    # On a shared case a unit sees only its own work order.
    seen = ok(api.get(f"/api/v1/cases/{shared}", "water1"))
    assert [w["unit_code"] for w in seen["work_orders"]] == ["water_supply"]
    # The audit trail is not for unit clerks.
    refused(api.get(f"/api/v1/cases/{water_case}/events", "water1"), 403, "A1")
    assert ok(api.get(f"/api/v1/work-orders/{water_wo['id']}", "water1"))["unit_code"] == "water_supply"


def test_r6_1_supervisor_reads_everything_but_cannot_act(api, clock):
    numbers = {new_case(api)["number"], new_case(api, "op2", title="其他诉求")["number"]}
    number = sorted(numbers)[0]
    assert {c["number"] for c in ok(api.get("/api/v1/cases", "sup1"))} == numbers
    assert ok(api.get(f"/api/v1/cases/{number}", "sup1"))["citizen_phone"] == PHONE
    assert ok(api.get(f"/api/v1/cases/{number}/events", "sup1"))[0]["action"] == "accept"
    assert "units" in ok(api.get("/api/v1/assessment", "sup1"))
    refused(api.post(f"/api/v1/cases/{number}/dispatch", "sup1", json={"units": ["water_supply"]}), 403, "R5.1")
    refused(api.post(f"/api/v1/cases/{number}/answer", "sup1", json={"answer": "x", "satisfaction": "satisfied"}), 403, "R5.1")
    refused(api.post("/api/v1/cases", "sup1", json={"kind": "consultation", "channel": "web", "title": "t",
                                                    "description": "d"}), 403, "R5.1")
    refused(close_case(api, number, "sup1"), 403, "R7.5")
    refused(api.post(f"/api/v1/cases/{number}/reject", "sup1",
                     json={"reason": "cannot_be_handled", "referral": "x"}), 403, "R3.2")
    assert ok(api.get(f"/api/v1/cases/{number}", "sup1"))["status"] == "new"


# ---- R8.2 / R8.3 timeliness recorded ---------------------------------------------------------
def test_r8_2_r8_3_notify_met_and_report_met_follow_the_clock(api, clock):
    prompt_case, slow_case = new_case(api)["number"], new_case(api)["number"]  # Monday 09:00
    prompt = only_wo(dispatch(api, prompt_case, units=["water_supply"]))
    slow = only_wo(dispatch(api, slow_case, units=["water_supply"]))
    assert when(prompt["notify_due_at"]) == local("2026-03-04T17:30")  # 2 working days
    assert when(prompt["report_due_at"]) == local("2026-03-09T17:30")  # 5 working days

    travel(api, clock, "2026-03-04T17:29")
    w = ok(api.post(f"/api/v1/work-orders/{prompt['id']}/notify", "water1", json={"channel": "phone"}))
    assert w["notify_met"] is True and w["notify_channel"] == "phone"
    travel(api, clock, "2026-03-04T17:31")
    w = ok(api.post(f"/api/v1/work-orders/{slow['id']}/notify", "water1", json={"channel": "sms"}))
    assert w["notify_met"] is False

    travel(api, clock, "2026-03-09T17:29")
    w = ok(report_back(api, prompt['id'], "water1", answer="已答复"))
    assert w["report_met"] is True
    travel(api, clock, "2026-03-09T17:31")
    w = ok(report_back(api, slow['id'], "water1", answer="已答复"))
    assert w["report_met"] is False
    # The flags are stored and shown later to whoever assesses the unit (T3).
    scores = {u["code"]: u["figures"] for u in ok(api.get("/api/v1/assessment", "bo1"))["units"]}
    assert (scores["water_supply"]["response"]["numerator"], scores["water_supply"]["response"]["denominator"]) == (1, 2)
    assert (scores["water_supply"]["on_time"]["numerator"], scores["water_supply"]["on_time"]["denominator"]) == (1, 2)


def test_r8_4_notification_time_told_later_counts_from_when_the_citizen_was_told(api, clock):
    wo = only_wo(dispatch(api, new_case(api)["number"], units=["water_supply"]))
    travel(api, clock, "2026-03-05T09:00")  # recorded after the limit ...
    w = ok(api.post(f"/api/v1/work-orders/{wo['id']}/notify", "water1",
                    json={"channel": "phone", "notified_at": "2026-03-04T16:00:00+08:00"}))
    assert w["notify_met"] is True and when(w["notified_at"]) == local("2026-03-04T16:00")  # ... told in time
    other = only_wo(dispatch(api, new_case(api)["number"], units=["water_supply"]))
    # Neither in the future nor before the dispatch.
    refused(api.post(f"/api/v1/work-orders/{other['id']}/notify", "water1",
                     json={"channel": "phone", "notified_at": "2026-03-06T09:00:00+08:00"}), 422, "R8.4")
    refused(api.post(f"/api/v1/work-orders/{other['id']}/notify", "water1",
                     json={"channel": "phone", "notified_at": "2026-03-05T08:00:00+08:00"}), 422, "R8.4")
