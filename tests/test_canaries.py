"""R5.3, R6.1, R7.3c: a leak nobody listed is still found. The store holds a discipline report, a
case of another unit, and a case its first unit returned, each with a unique canary string in every
free-text field; every GET operation of the OpenAPI schema (read from the app, so a new route is
covered without editing this test) is called as every role with every sample of its parameters,
and no answer may carry a canary the role must not see.

Parameters come from SAMPLES by name; a route with a parameter this test has no samples for fails
the test, so a new kind of parameter is noticed rather than skipped. State-changing operations are
checked by the rule tests (their answers are the same views as the reads here)."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from tests.helpers import ok, report_back
from ticketing import calls
from ticketing.models import Case
from ticketing.store import session_scope

REPORTER = "13900007777"
DISC, URBAN, RETURNED = "纪检甲一", "城管乙二", "退回丙三"  # canaries
EVERYTHING = (DISC, URBAN, RETURNED)
# who must not see which canary (R7.3c: the commission alone; R5.3: a unit, its own held orders)
FORBIDDEN = {
    "op1": (DISC,), "bo1": (DISC,), "sup1": (DISC,), "admin1": (DISC,),
    "water1": EVERYTHING, "urban1": (DISC, RETURNED), "housing1": EVERYTHING, "power1": (DISC, URBAN),
    "disc1": (URBAN, RETURNED), None: EVERYTHING,
}


def _store(api, seeded) -> dict:
    made: dict = {}
    disc = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "landline", "title": f"举报{DISC}", "description": f"某局长{DISC}",
        "location": f"局机关{DISC}", "category_code": "discipline_economic", "citizen_name": f"举报人{DISC}",
        "citizen_phone": REPORTER}), 201)
    disc = ok(api.post(f"/api/v1/cases/{disc['number']}/dispatch", "op1", json={"instructions": f"请核查{DISC}"}))
    (dwo,) = disc["work_orders"]
    ok(api.post(f"/api/v1/work-orders/{dwo['id']}/extensions", "disc1",
                json={"legal_basis": f"《监督执纪工作规则》{DISC}", "extra_working_days": 5}), 201)
    ok(api.post(f"/api/v1/work-orders/{dwo['id']}/notify", "disc1", json={"channel": "phone", "note": f"已告知{DISC}"}))
    ok(report_back(api, dwo['id'], "disc1", answer=f"已立案{DISC}"))
    refused_report = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "landline", "title": f"举报二{DISC}", "description": f"某科长{DISC}",
        "category_code": "discipline_economic", "citizen_phone": REPORTER}), 201)
    ok(api.post(f"/api/v1/cases/{refused_report['number']}/reject", "op1",
                json={"reason": "outside_jurisdiction", "referral": f"省纪委{DISC}"}))

    urban = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "mobile", "title": f"占道{URBAN}", "description": f"占道经营{URBAN}",
        "location": f"人民路{URBAN}", "citizen_name": f"市民{URBAN}", "citizen_phone": "13700000001"}), 201)
    urban = ok(api.post(f"/api/v1/cases/{urban['number']}/dispatch", "op1",
                        json={"units": ["urban_management"], "instructions": f"请处理{URBAN}"}))
    (uwo,) = urban["work_orders"]
    ok(api.post(f"/api/v1/work-orders/{uwo['id']}/notify", "urban1", json={"channel": "phone"}))
    ok(report_back(api, uwo['id'], "urban1", answer=f"已清理{URBAN}"))

    ret = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "mobile", "title": f"停电{RETURNED}", "description": f"小区停电{RETURNED}",
        "location": f"阳光小区{RETURNED}", "citizen_phone": "13700000002"}), 201)
    ret = ok(api.post(f"/api/v1/cases/{ret['number']}/dispatch", "op1", json={"units": ["housing_construction"]}))
    (rwo,) = ret["work_orders"]
    ok(api.post(f"/api/v1/work-orders/{rwo['id']}/return", "housing1", json={"reason": "属于供电公司职责"}))
    ok(api.post(f"/api/v1/work-orders/{rwo['id']}/return/decision", "bo1", json={"approve": True}))
    version = ok(api.get(f"/api/v1/cases/{ret['number']}", "bo1"))["version"]
    ret = ok(api.post(f"/api/v1/cases/{ret['number']}/dispatch", "bo1", json={
        "units": ["power_supply"], "instructions": f"请抢修{RETURNED}", "expected_version": version}))

    with session_scope(seeded) as s:
        case_id = s.execute(select(Case.id).where(Case.number == disc["number"])).scalar_one()
        call = calls.call_row(s, uniqueid="1772430000.1", caller_number=REPORTER, started_at=datetime.now(UTC))
        calls.finish_call(s, call.id, outcome="queued", reason="complaint", ended_at=datetime.now(UTC),
                          flow_path=["greeting", "main_menu", "complaint"], digits=[{"node": "main_menu", "digits": "3"}],
                          case_id=case_id)
        made["call_id"] = call.id
    made["numbers"] = [disc["number"], refused_report["number"], urban["number"], ret["number"]]
    made["wo_ids"] = [w["id"] for c in (disc, urban, ret) for w in c["work_orders"]]
    return made


def _samples(made: dict) -> dict[str, list]:
    return {
        "number": made["numbers"], "wo_id": made["wo_ids"], "call_id": [made["call_id"]],
        "uniqueid": ["1772430000.1"], "code": ["discipline_commission", "urban_management", "housing_construction"],
        "caller": [REPORTER, "13700000001", "13700000002"], "q": ["举报", "占道", "停电"],
        "status": ["new", "dispatched", "reported", "rejected", "closed"], "kind": ["complaint"],
        "due": ["soon", "overdue", "notify_soon", "notify_overdue"], "scope": ["active", "done"],
        "state": ["pending", "approved", "denied"], "overdue": ["true"], "callback_manual": ["true", "false"],
        # no sample needed beyond the default
        "limit": [], "offset": [], "type": [], "unit": [], "category": [], "since": [], "until": [], "at": [],
    }


def _requests(spec: dict, samples: dict[str, list]):
    unknown = set()
    for path, ops in spec["paths"].items():
        op = ops.get("get")
        if op is None:
            continue
        params = [p for p in op.get("parameters", []) if p["in"] in ("path", "query")]
        unknown |= {p["name"] for p in params if p["name"] not in samples}
        paths = [path]
        for p in (p for p in params if p["in"] == "path"):
            paths = [q.replace("{" + p["name"] + "}", str(v)) for q in paths for v in samples.get(p["name"], [])]
        for url in paths:
            yield url
            for p in (p for p in params if p["in"] == "query"):
                for v in samples.get(p["name"], []):
                    yield f"{url}?{p['name']}={v}"
    assert not unknown, f"add samples for these parameters: {sorted(unknown)}"


def test_r5_3_r7_3c_no_route_shows_a_role_what_it_must_not_see(api, seeded):
    made = _store(api, seeded)
    spec = api.client.app.openapi()
    urls = list(_requests(spec, _samples(made))) + ["/public"]
    assert len(urls) > 60
    leaks = []
    for who, forbidden in FORBIDDEN.items():
        for url in urls:
            text = api.get(url, who).text
            leaks += [(who, url, canary) for canary in forbidden if canary in text]
    assert not leaks, leaks[:20]
    # the test can see: the roles allowed do read the canaries
    assert DISC in api.get(f"/api/v1/cases/{made['numbers'][0]}", "disc1").text
    assert URBAN in api.get(f"/api/v1/cases/{made['numbers'][2]}", "urban1").text
    assert RETURNED in api.get(f"/api/v1/cases/{made['numbers'][3]}", "power1").text
