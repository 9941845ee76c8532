"""The staff console's read-only lists (/api/v1/console): the same access rules as the rest of the
API (R5.3, R7.3c), deadlines marked for the people who must act (T3). SQLite and PostgreSQL."""
from __future__ import annotations

from ticketing.access import CONFIDENTIAL_PLACEHOLDER
from ticketing.workflow import CONVENIENCE_DISCLAIMER, DISCIPLINE_MESSAGE
from tests.helpers import close_case, ok, refused, report_back, travel


def _case(api, as_="op1", **fields) -> dict:
    body = {"kind": "consultation", "channel": "landline", "title": "水压低", "description": "三楼以上水压低",
            "category_code": "water_supply", "citizen_name": "王小明", "citizen_phone": "13912340000", "dispatch": {}}
    body.update(fields)
    return ok(api.post("/api/v1/cases", as_, json=body), 201)


def test_r7_3_categories_spell_out_routing_and_what_to_read_aloud(api):
    cats = {c["code"]: c for c in ok(api.get("/api/v1/console/categories", "op1"))}
    water = cats["water_supply"]
    assert water["mode"] == "work_order" and [u["name"] for u in water["units"]] == ["宜兴市自来水公司"]
    assert water["read_aloud"] is None
    assert cats["discipline_economic"]["read_aloud"] == DISCIPLINE_MESSAGE  # R7.3c
    assert cats["life_service"]["read_aloud"] == CONVENIENCE_DISCLAIMER    # R7.3f
    assert cats["illegal_construction"]["lead"] == "urban_management"       # R7.3h
    assert cats["service_attitude"]["concerned_unit"] is True and cats["service_attitude"]["units"] == []


def test_r4_1_my_cases_are_the_operators_own_open_cases(api):
    mine = _case(api, "op1")
    theirs = _case(api, "op2")
    refused_case = _case(api, "op1", dispatch=None,
                         reject={"reason": "outside_jurisdiction", "referral": "无锡市12345，电话0510-12345"})
    numbers = [c["number"] for c in ok(api.get("/api/v1/console/my-cases", "op1"))]
    assert mine["number"] in numbers
    assert theirs["number"] not in numbers and refused_case["number"] not in numbers  # closed at intake
    refused(api.get("/api/v1/console/my-cases", "water1"), 403, "R4.1")


def test_r5_3_r7_3c_t3_unit_inbox_is_its_own_with_deadlines_marked(api, clock):
    water = _case(api)
    secret = _case(api, kind="complaint", category_code="discipline_economic", title="反映某局长收受红包",
                   description="某局长收受红包")
    inbox = ok(api.get("/api/v1/console/work-orders", "water1"))
    assert [i["case"]["number"] for i in inbox] == [water["number"]]
    item = inbox[0]
    assert item["case"]["title"] == "水压低" and item["case"]["citizen_phone"] == "13912340000"
    assert item["notify_mark"] == "pending" and item["report_mark"] == "pending"
    assert ok(api.get("/api/v1/console/work-orders", "urban1")) == []

    # R7.3c: the commission reads its report; the center sees it counted, content hidden
    (disc,) = ok(api.get("/api/v1/console/work-orders", "disc1"))
    assert disc["case"]["title"] == "反映某局长收受红包"
    center = {i["case"]["number"]: i for i in ok(api.get("/api/v1/console/work-orders", "sup1"))}
    hidden = center[secret["number"]]["case"]
    assert hidden["title"] == CONFIDENTIAL_PLACEHOLDER and hidden["description"] == CONFIDENTIAL_PLACEHOLDER
    assert hidden["citizen_name"] == "" and hidden["citizen_phone"] == ""

    # T3: 2026-03-04 10:00 - notification due 17:30 today (soon); 03-05 10:00 - overdue
    travel(api, clock, "2026-03-04T10:00")
    (item,) = ok(api.get("/api/v1/console/work-orders", "water1"))
    assert item["notify_mark"] == "soon" and item["report_mark"] == "pending"
    travel(api, clock, "2026-03-05T10:00")
    (item,) = ok(api.get("/api/v1/console/work-orders", "water1"))
    assert item["notify_mark"] == "overdue"
    wo_id = item["work_order"]["id"]
    ok(api.post(f"/api/v1/work-orders/{wo_id}/notify", "water1", json={"channel": "phone"}))
    ok(report_back(api, wo_id, "water1", answer="已恢复"))
    assert ok(api.get("/api/v1/console/work-orders", "water1")) == []
    (done,) = ok(api.get("/api/v1/console/work-orders?scope=done", "water1"))
    assert done["notify_mark"] == "late" and done["report_mark"] == "met"


def test_r7_6_publishable_lists_closed_cases_never_r7_3c_or_refused(api):
    handled = _case(api, dispatch=None)
    ok(api.post(f"/api/v1/cases/{handled['number']}/answer", "op1", json={"answer": "已答复", "satisfaction": "satisfied"}))
    ok(close_case(api, handled['number'], "op1"))
    _case(api, dispatch=None, reject={"reason": "outside_jurisdiction", "referral": "无锡市12345"})
    secret = _case(api, kind="complaint", category_code="discipline_economic", title="举报", description="举报内容")
    (wo,) = secret["work_orders"]
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/notify", "disc1", json={"channel": "phone"}))
    ok(report_back(api, wo['id'], "disc1", answer="已按程序办理"))
    ok(close_case(api, secret['number'], "op1"))
    assert [c["number"] for c in ok(api.get("/api/v1/console/publishable", "bo1"))] == [handled["number"]]
    ok(api.post(f"/api/v1/cases/{handled['number']}/publish", "bo1", json={}))
    assert ok(api.get("/api/v1/console/publishable", "bo1")) == []
    refused(api.get("/api/v1/console/publishable", "op1"), 403, "R7.6")
