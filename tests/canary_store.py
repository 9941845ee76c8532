"""The canary store the leak tests share (tests/test_canaries*.py): a discipline report, a case of
another unit and a case its first unit returned, each with a unique canary string in every free-text
field; who must not see which canary; samples for every parameter the OpenAPI schema names."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from tests.helpers import ok, report_back
from ticketing import attachments, calls
from ticketing.audit import SYSTEM
from ticketing.models import Case
from ticketing.store import session_scope

REPORTER = "13900007777"
CALL_UNIQUEID = "1772430000.1"  # the reporter's call, linked to the discipline report
DISC, URBAN, RETURNED = "纪检甲一", "城管乙二", "退回丙三"  # canaries
EVERYTHING = (DISC, URBAN, RETURNED)
# who must not see which canary (R7.3c: the commission alone; R5.3: a unit, its own held orders)
FORBIDDEN = {
    "op1": (DISC,), "bo1": (DISC,), "sup1": (DISC,), "admin1": (DISC,),
    "water1": EVERYTHING, "urban1": (DISC, RETURNED), "housing1": EVERYTHING, "power1": (DISC, URBAN),
    "disc1": (URBAN, RETURNED), None: EVERYTHING,
}
WRITE_METHODS = ("post", "put", "patch", "delete")


def leaks_in(text: str, who: str | None) -> list[str]:
    return [canary for canary in FORBIDDEN[who] if canary in text]


def build(api, seeded) -> dict:
    """The canary store, made through the API as the people who would make it."""
    made: dict = {}
    disc = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "landline", "title": f"举报{DISC}", "description": f"某局长{DISC}",
        "location": f"局机关{DISC}", "category_code": "discipline_economic", "citizen_name": f"举报人{DISC}",
        "citizen_phone": REPORTER}), 201)
    disc = ok(api.post(f"/api/v1/cases/{disc['number']}/dispatch", "op1",
                       json={"instructions": f"请核查{DISC}", "expected_version": disc["version"]}))
    (dwo,) = disc["work_orders"]
    ext = ok(api.post(f"/api/v1/work-orders/{dwo['id']}/extensions", "disc1",
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
    urban = ok(api.post(f"/api/v1/cases/{urban['number']}/dispatch", "op1", json={
        "units": ["urban_management"], "instructions": f"请处理{URBAN}", "expected_version": urban["version"]}))
    (uwo,) = urban["work_orders"]
    ok(api.post(f"/api/v1/work-orders/{uwo['id']}/notify", "urban1", json={"channel": "phone"}))
    ok(report_back(api, uwo['id'], "urban1", answer=f"已清理{URBAN}"))

    ret = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "mobile", "title": f"停电{RETURNED}", "description": f"小区停电{RETURNED}",
        "location": f"阳光小区{RETURNED}", "citizen_phone": "13700000002"}), 201)
    ret = ok(api.post(f"/api/v1/cases/{ret['number']}/dispatch", "op1",
                      json={"units": ["housing_construction"], "expected_version": ret["version"]}))
    (rwo,) = ret["work_orders"]
    ok(api.post(f"/api/v1/work-orders/{rwo['id']}/return", "housing1", json={"reason": "属于供电公司职责"}))
    ok(api.post(f"/api/v1/work-orders/{rwo['id']}/return/decision", "bo1", json={"approve": True}))
    version = ok(api.get(f"/api/v1/cases/{ret['number']}", "bo1"))["version"]
    ret = ok(api.post(f"/api/v1/cases/{ret['number']}/dispatch", "bo1", json={
        "units": ["power_supply"], "instructions": f"请抢修{RETURNED}", "expected_version": version}))
    entry = ok(api.post("/api/v1/units/urban_management/knowledge", "urban1",
                        json={"question": "占道经营归谁管", "answer": "城管局"}), 201)
    ok(api.post(f"/api/v1/knowledge/{entry['id']}/submit", "urban1"))
    ok(api.post(f"/api/v1/knowledge/{entry['id']}/review", "bo1", json={"decision": "publish"}))
    flag = ok(api.post(f"/api/v1/knowledge/{entry['id']}/flags", "op1", json={"reason": "outdated", "note": "电话已变更"}), 201)

    # R6.1: inquiries into the commission (on the report: its explanation carries the canary), into
    # the urban unit (its explanation too) and into the unit that returned a case (it sees no content)
    inquiries = [ok(api.post("/api/v1/inquiries", "sup1", json={
        "reason": "overdue", "description": "请说明办理情况", **target}), 201)
        for target in ({"case_number": disc["number"], "unit_code": "discipline_commission"},
                       {"work_order_id": uwo["id"]}, {"work_order_id": rwo["id"]})]
    for inquiry, who, canary in zip(inquiries, ("disc1", "urban1"), (DISC, URBAN)):
        ok(api.post(f"/api/v1/inquiries/{inquiry['id']}/explanation", who, json={"explanation": f"说明{canary}"}))

    # R7.6: a hot topic (three requests about one street's water cut) and its public answer; the
    # discipline report never joins a topic
    for _ in range(3):
        ok(api.post("/api/v1/cases", "op1", json={
            "kind": "complaint", "channel": "landline", "title": "停水", "description": "人民路停水",
            "location": "人民路", "category_code": "water_supply", "citizen_phone": "13700000003"}), 201)
    answer = ok(api.post("/api/v1/hot-topics/answers", "bo1", json={
        "category_code": "water_supply", "term": "停水", "place": "人民路", "title": "人民路停水",
        "answer": "已抢修完毕"}), 201)

    with session_scope(seeded) as s:
        case_id = s.execute(select(Case.id).where(Case.number == disc["number"])).scalar_one()
        call = calls.call_row(s, uniqueid=CALL_UNIQUEID, caller_number=REPORTER, started_at=datetime.now(UTC))
        calls.finish_call(s, call.id, outcome="queued", reason="complaint", ended_at=datetime.now(UTC),
                          flow_path=["greeting", "main_menu", "complaint"], digits=[{"node": "main_menu", "digits": "3"}],
                          case_id=case_id)
        made["call_id"] = call.id
        # files of the report and of the urban case (issue 14: a citizen's photo), their canary in the bytes
        made["attachment_ids"] = [attachments.attach(
            s, SYSTEM, s.execute(select(Case).where(Case.number == number)).scalar_one(),
            b"\x89PNG\r\n\x1a\n" + canary.encode(), source="web_photo", allowed=attachments.PHOTO_TYPES,
            max_bytes=1 << 20, now=datetime.now(UTC)).id for number, canary in ((disc["number"], DISC), (urban["number"], URBAN))]
    made["numbers"] = [disc["number"], refused_report["number"], urban["number"], ret["number"]]
    made["wo_ids"] = [w["id"] for c in (disc, urban, ret) for w in c["work_orders"]]
    made["ext_ids"] = [ext["id"]]
    made["entry_ids"] = [entry["id"]]
    made["flag_ids"] = [flag["id"]]
    made["inquiry_ids"] = [i["id"] for i in inquiries]
    made["answer_ids"] = [answer["id"]]
    return made


def samples(made: dict) -> dict[str, list]:
    """Values for every parameter name of the schema; [] means: called with the default only (a
    query parameter) or not called (a path parameter, with the reason beside it)."""
    return {
        "number": made["numbers"], "wo_id": made["wo_ids"], "call_id": [made["call_id"]],
        "uniqueid": [CALL_UNIQUEID], "code": ["discipline_commission", "urban_management", "housing_construction"],
        "caller": [REPORTER, "13700000001", "13700000002"], "q": ["举报", "占道", "停电"],
        "status": ["new", "dispatched", "reported", "rejected", "closed"], "kind": ["complaint"],
        "due": ["soon", "overdue", "notify_soon", "notify_overdue"], "scope": ["active", "done"],
        "state": ["pending", "approved", "denied"], "overdue": ["true"], "callback_manual": ["true", "false"],
        "ext_id": made["ext_ids"], "entry_id": made["entry_ids"], "flag_id": made["flag_ids"], "inquiry_id": made["inquiry_ids"],
        "username": ["op2"],  # an account none of the swept roles logs in with
        "channel": [f"PJSIP/op8001-{CALL_UNIQUEID}"],
        "extension": ["8001"],  # an operator's phone (listen/whisper/barge, issue 12 §5)
        # the assessment (issue 12 §2): a unit that returned a case and one whose work is R7.3c only
        "unit_code": ["urban_management", "housing_construction", "discipline_commission", "power_supply"],
        # (statistics share the names: a figure or part one route does not know is its 422)
        "month": ["2026-03"], "part": ["numerator", "denominator", "missed"],
        "figure": ["on_time", "response", "satisfaction", "returned", "urged_overdue", "received", "rejected",
                   "closed"],
        # the calendar carries no case content, and the test domain has no config directory to write
        # a holiday arrangement to (Domain.set_arrangement): not called
        "year": [],
        # no sample needed beyond the default
        "limit": [], "offset": [], "type": [], "category": [], "since": [], "until": [], "at": [],
        # statistics (issue 12 item 6): the canary cases' month and day (the test clock's, 2026-03-02),
        # their units, and drill-downs into each kind of list; a unit's staff asking for another: 403
        "unit": ["discipline_commission", "urban_management", "housing_construction"],
        "to_unit": ["discipline_commission", "urban_management"], "day": ["2026-03-02"],
        "reason": ["outside_jurisdiction"], "deadline": ["report", "notify"], "hour": ["9"], "operator": [],
        # the inquiry counts per unit (R6.1) carry unit codes and numbers only; both are required
        "start": [], "end": [],
        # Open311 GeoReport v2 (issue 14): the format suffix, services (one offered, one never: R7.3c),
        # service requests by case number (the discipline report among them: never found), a token
        # (none exists: every service is realtime), the date window's default and its ignored
        # jurisdiction_id
        "fmt": ["json", "xml"], "service_code": ["water_supply", "discipline_economic"],
        "service_request_id": made["numbers"], "token": ["1"], "start_date": [], "end_date": [],
        "jurisdiction_id": [],
        # exports (issue 12 item 7): each view of the monthly report (month: above)
        "view": ["calls", "calls_by_hour", "operators", "cases", "case_breakdown", "units", "callbacks", "assessment"],
        "open_only": ["false"],  # a unit's resolved knowledge flags too
        "attachment_id": made["attachment_ids"],  # a case's files (issue 14): the report's, the urban case's
        "answer_id": made["answer_ids"],  # a hot topic's public answer (R7.6)
        # notice deliveries (issue 14) by case number, the R7.3c report's among them; the store has
        # no delivery to retry (no unit chose the hotline's call): not called
        "case_number": made["numbers"], "delivery_id": [],
    }


_SPEC: dict = {}


def openapi(app) -> dict:
    """The app's OpenAPI schema, made once per test process (every test app has the same routes;
    making it costs seconds) and handed to each app so its own /openapi.json is not made again."""
    if "spec" not in _SPEC:
        _SPEC["spec"] = app.openapi()
    app.openapi_schema = _SPEC["spec"]
    return _SPEC["spec"]


def operations(spec: dict, methods, params: dict[str, list]):
    """(method, path template, url) for every operation of `methods` and every sample of its path
    parameters; an unknown parameter name fails, so a new kind of parameter is noticed."""
    unknown = set()
    for path, ops in spec["paths"].items():
        for method in methods:
            op = ops.get(method)
            if op is None:
                continue
            names = [p["name"] for p in op.get("parameters", []) if p["in"] in ("path", "query")]
            unknown |= {n for n in names if n not in params}
            urls = [path]
            for p in (p for p in op.get("parameters", []) if p["in"] == "path"):
                urls = [u.replace("{" + p["name"] + "}", str(v)) for u in urls for v in params.get(p["name"], [])]
            for url in urls:
                yield method, path, url, op
    assert not unknown, f"add samples for these parameters: {sorted(unknown)}"


def get_requests(spec: dict, params: dict[str, list]):
    """Every GET url, with each query sample as a variant: (base url, [variants])."""
    for _method, _path, url, op in operations(spec, ("get",), params):
        variants = [f"{url}?{p['name']}={v}" for p in op.get("parameters", []) if p["in"] == "query"
                    for v in params.get(p["name"], [])]
        yield url, variants
