"""A first life through the API; the full lives are in test_api_lives.py."""

from tests.helpers import close_case, report_back


def test_r7_1_consultation_life_closes_after_satisfied_callback(api, clock):
    r = api.post("/api/v1/cases", "op1", json={
        "kind": "consultation", "channel": "mobile", "title": "自来水停水咨询",
        "description": "宜城街道某小区停水，何时恢复？", "category_code": None, "citizen_phone": "13800001111"})
    assert r.status_code == 201, r.text
    number = r.json()["number"]
    r = api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={"units": ["water_supply"]})
    assert r.status_code == 200, r.text
    wo = r.json()["work_orders"][0]
    assert api.post(f"/api/v1/work-orders/{wo['id']}/receive", "water1").status_code == 200
    assert api.post(f"/api/v1/work-orders/{wo['id']}/notify", "water1", json={"channel": "phone"}).status_code == 200
    r = report_back(api, wo['id'], "water1", answer="管网抢修，今晚恢复", satisfaction="satisfied")
    assert r.status_code == 200, r.text
    assert api.get(f"/api/v1/cases/{number}", "op1").json()["status"] == "reported"
    r = api.post(f"/api/v1/cases/{number}/callback", "op1", json={"satisfaction": "satisfied"})
    assert r.status_code == 200, r.text
    r = close_case(api, number, "op1")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "closed"
    assert api.get("/api/v1/audit/verify", "sup1").json()["ok"] is True
