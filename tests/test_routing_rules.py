"""Routing by category (config/categories.yaml) for R7.3a, R7.3b and R7.3d, through the API."""
from __future__ import annotations

import pytest

from ticketing.enums import UnitType


def _new(api, kind: str, category: str, as_: str = "op1") -> str:
    r = api.post("/api/v1/cases", as_, json={"kind": kind, "channel": "landline", "title": "来电",
                                             "description": "市民来电反映情况", "category_code": category,
                                             "citizen_phone": "051087001234"})
    assert r.status_code == 201, r.text
    return r.json()["number"]


def test_r7_3a_consultation_to_a_department_goes_by_work_order(api, domain):
    """R7.3a: consultations are answered directly where possible (R7.2); otherwise a government
    department normally gets a work order, and urgent public services a three-way call."""
    departments = {u.code for u in domain.city.units if u.type == UnitType.DEPARTMENT}
    for cat in domain.city.categories:
        if "consultation" in cat.kinds and set(cat.route.units) & departments:
            assert cat.route.mode == "work_order", cat.code
    number = _new(api, "consultation", "social_insurance")
    r = api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={})  # units from the routing rule
    assert r.status_code == 200, r.text
    [wo] = r.json()["work_orders"]
    assert (wo["unit_code"], wo["mode"]) == ("human_resources", "work_order")


def test_r7_3a_consultation_can_be_answered_directly_instead(api):
    number = _new(api, "consultation", "school_enrollment")
    r = api.post(f"/api/v1/cases/{number}/answer", "op1",
                 json={"answer": "按学区划分入学，详见教育局公告。", "satisfaction": "satisfied"})
    assert r.status_code == 200 and r.json()["work_orders"] == [] and r.json()["callback_required"] is False


def test_r7_3b_suggestions_go_by_work_order_to_the_unit_in_charge(api, domain):
    for cat in domain.city.categories:
        if "suggestion" in cat.kinds:
            assert cat.route.mode == "work_order", cat.code
    number = _new(api, "suggestion", "public_transport")
    r = api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={})
    assert r.status_code == 200, r.text
    [wo] = r.json()["work_orders"]
    assert (wo["unit_code"], wo["mode"]) == ("bus", "work_order")


@pytest.mark.parametrize("unit", ["discipline_commission", "housing_construction"])
def test_r7_3d_staff_misconduct_goes_to_the_discipline_commission_or_the_managing_unit(api, unit):
    """R7.3d: inaction or misconduct goes to whoever manages the official — the discipline
    commission or the unit itself; unlike R7.3c it is not confidential."""
    number = _new(api, "complaint", "staff_misconduct")
    r = api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={"units": [unit]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["work_orders"][0]["unit_code"] == unit and body["confidential"] is False
    assert body["callback_required"] is True


def test_r7_3d_service_attitude_goes_to_the_unit_concerned(api, domain):
    cat = next(c for c in domain.city.categories if c.code == "service_attitude")
    assert "discipline_commission" not in cat.route.units and cat.route.mode == "work_order"
    number = _new(api, "complaint", "service_attitude")
    # the rule names no fixed unit: the operator must say which unit the complaint is about
    r = api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={})
    assert r.status_code == 422 and "unit" in r.json()["detail"]
    r = api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={"units": ["tax"]})
    assert r.status_code == 200 and r.json()["work_orders"][0]["unit_code"] == "tax"


def test_r7_3_accept_and_dispatch_in_one_request(api):
    """R7.3: the front desk dispatches the day it accepts — in the same request if it likes."""
    r = api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "web", "title": "小区停水", "description": "三天未恢复供水",
        "category_code": "water_supply", "citizen_phone": "13900001111", "dispatch": {}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "dispatched" and body["work_orders"][0]["unit_code"] == "water_supply"
    events = api.get(f"/api/v1/cases/{body['number']}/events", "sup1").json()
    assert [e["action"] for e in events] == ["accept", "dispatch"]  # A1: both steps on record


def test_r7_3_refused_dispatch_in_the_intake_request_stores_nothing(api):
    before = api.get("/api/v1/cases/count", "sup1").json()
    r = api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "web", "title": "x", "description": "y",
        "dispatch": {"units": ["cable_tv"]}})  # a unit that has not joined (R3.1(6))
    assert r.status_code == 409 and r.json()["error"] == "R3.1"
    assert api.get("/api/v1/cases/count", "sup1").json() == before
