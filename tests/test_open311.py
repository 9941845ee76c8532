"""Open311 GeoReport v2 under /open311/v2/ (issue 14 item 2; R2.2, R7.1, R7.3c, R7.6, A1).

`SpecClient` below is written from the GeoReport v2 text (wiki.open311.org/GeoReport_v2 and
/Service_Discovery), not from our code: it knows the URLs, the form fields and the documented
response elements, reads JSON with httpx and XML with xml.etree, and imports no serializer of ours.
Both formats of every answer are read and must say the same."""
from __future__ import annotations

import json
from urllib.parse import urlencode
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import select

from callcenter.open311 import clients
from tests.helpers import ok
from ticketing import audit
from ticketing.audit import Actor
from ticketing.models import AuditEvent, Case
from ticketing.store import session_scope

CONSOLE = Actor(user_id=None, name="console", role="system")
FORMATS = ("json", "xml")


# ---- a client written from the spec ------------------------------------------------------------

def _container(root: ET.Element, tag: str, item: str) -> list[dict]:
    assert root.tag == tag, root.tag
    return [_fields(el) for el in root.findall(item)]


def _fields(el: ET.Element) -> dict:
    """One documented element's children as text (an empty element reads as None)."""
    out = {}
    for child in el:
        if child.tag == "attributes":
            out["attributes"] = [{**_fields(a), "values": [_fields(v) for v in a.findall("values/value")]}
                                 for a in child.findall("attribute")]
        elif child.tag == "endpoints":
            out["endpoints"] = [{**_fields(e), "formats": [f.text for f in e.findall("formats/format")]}
                                for e in child.findall("endpoint")]
        elif len(child) == 0:
            out[child.tag] = child.text
    return out


def _as_text(value):
    """JSON's values as the XML text of the same field: true/false, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_text(v) for k, v in value.items() if not isinstance(v, list) or k in ("attributes", "values", "endpoints", "formats")}
    return None if value == "" else value


class SpecClient:
    """GeoReport v2 as its documentation describes it."""

    def __init__(self, http, base: str = "/open311/v2"):
        self.http, self.base = http, base

    def _read(self, r, fmt: str, tag: str | None, item: str | None):
        if fmt == "json":
            assert r.headers["content-type"].startswith("application/json"), r.headers
            return r.json()
        assert r.headers["content-type"].startswith("text/xml"), r.headers
        # "the root element must be preceded with the XML declaration including the encoding="UTF-8" attribute"
        assert r.content.lower().startswith(b'<?xml version="1.0" encoding="utf-8"?>'), r.content[:60]
        root = ET.fromstring(r.content)
        if root.tag == "errors":
            return _container(root, "errors", "error")
        return _container(root, tag, item) if item else _fields(root)

    def get(self, resource: str, fmt: str, tag: str | None = None, item: str | None = None, **params):
        r = self.http.get(f"{self.base}/{resource}.{fmt}", params={k: v for k, v in params.items() if v is not None})
        return r.status_code, self._read(r, fmt, tag, item), r

    def both(self, resource: str, tag: str | None = None, item: str | None = None, **params):
        """The resource in JSON and in XML: the same status and the same fields."""
        (js, jbody, _), (xs, xbody, _) = (self.get(resource, f, tag, item, **params) for f in FORMATS)
        assert js == xs, (js, xs)
        normalized = _as_text(jbody)
        if isinstance(jbody, list) and jbody and "code" in jbody[0] and "description" in jbody[0] and js >= 400:
            normalized = [{"code": str(e["code"]), "description": e["description"]} for e in jbody]
        assert normalized == xbody, (normalized, xbody)
        return js, jbody

    def services(self):
        return self.both("services", "services", "service")

    def definition(self, code: str):
        return self.both(f"services/{code}", "service_definition")

    def requests(self, **params):
        return self.both("requests", "service_requests", "request", **params)

    def request(self, service_request_id: str):
        return self.both(f"requests/{service_request_id}", "service_requests", "request")

    def post(self, fmt: str, content_type: str = "application/x-www-form-urlencoded; charset=utf-8", **fields):
        r = self.http.post(f"{self.base}/requests.{fmt}", content=urlencode(fields).encode(),
                           headers={"Content-Type": content_type})
        return r.status_code, self._read(r, fmt, "service_requests", "request"), r


def _errors(body) -> list[tuple[str, str]]:
    """The spec's error list: every item a code and a human-readable description."""
    assert isinstance(body, list) and body, body
    for e in body:
        assert set(e) >= {"code", "description"} and e["description"], e
    return [(str(e["code"]), e["description"]) for e in body]


def refused(spec: SpecClient, expected: int, resource: str, **params) -> list:
    for fmt in FORMATS:
        code, body, _r = spec.get(resource, fmt, **params)
        assert code == expected, (fmt, code, body)
        _errors(body)
    return body


@pytest.fixture
def spec(api) -> SpecClient:
    return SpecClient(api.client)


def add_client(sessions, clock, name: str = "city-app", rate_limit: int = 60) -> str:
    with session_scope(sessions) as s:
        return clients.add_client(s, CONSOLE, name, now=clock(), rate_limit=rate_limit)[1]


WATER = {"service_code": "water_supply", "attribute[kind]": "complaint", "lat": "31.3621457", "long": "119.8123456",
         "description": "宜城街道人民路自来水管漏水，水流到路面上"}


def one_kind(code: str) -> dict:
    """WATER's request for a service of a single kind (no attribute to answer)."""
    return {k: v for k, v in {**WATER, "service_code": code}.items() if k != "attribute[kind]"}


# ---- services ----------------------------------------------------------------------------------

def test_discovery_names_the_v2_endpoint_in_both_formats(spec):
    status, body = spec.both("discovery")
    assert status == 200
    r = spec.http.get("/open311/v2/discovery.json")
    assert r.headers["x-content-type-options"] == "nosniff" and "frame-ancestors 'none'" in r.headers[
        "content-security-policy"]
    assert body["changeset"] and body["contact"] and body["key_service"]
    (endpoint,) = body["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"].endswith("/open311/v2") and endpoint["type"] == "production"
    assert set(endpoint["formats"]) == {"text/xml", "application/json"}


def test_r2_1_r7_3c_services_are_the_citys_categories_except_discipline_and_urgent_help(spec, domain):
    status, services = spec.services()
    assert status == 200
    codes = {s["service_code"] for s in services}
    assert {"water_supply", "illegal_construction", "noise_nuisance", "staff_misconduct"} <= codes
    # R7.3c reports go to the discipline commission by phone (12388); urgent help is live (R7.3e-g)
    assert not codes & {"discipline_economic", "water_emergency", "life_service", "natural_disaster"}
    assert codes <= {c.code for c in domain.city.categories}
    water = next(s for s in services if s["service_code"] == "water_supply")
    assert water["service_name"] == "供水" and water["type"] == "realtime" and water["metadata"] is True
    assert water["group"] == "宜兴市自来水公司"  # the unit that answers it
    assert next(s for s in services if s["service_code"] == "community_affairs")["group"] is None  # ten towns
    single = next(s for s in services if s["service_code"] == "illegal_construction")
    assert single["metadata"] is False  # one kind: nothing to ask


def test_r2_1_service_definition_asks_the_kind_of_case(spec):
    status, definition = spec.definition("water_supply")
    assert status == 200 and definition["service_code"] == "water_supply"
    (kind,) = definition["attributes"]
    assert kind["code"] == "kind" and kind["datatype"] == "singlevaluelist"
    assert kind["required"] is True and kind["variable"] is True and kind["order"] == 1
    assert [v["key"] for v in kind["values"]] == ["consultation", "suggestion", "complaint"]
    assert spec.definition("illegal_construction")[1]["attributes"] == []


def test_service_definition_errors(spec):
    refused(spec, 404, "services/no_such_service")
    refused(spec, 404, "services/discipline_economic")  # R7.3c: not offered
    # an unknown format is the spec's 400 "URL request is invalid", answered in XML (the required one)
    r = spec.http.get("/open311/v2/services.html")
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/xml")
    assert ET.fromstring(r.content).find("error/code").text == "400"


# ---- POST requests -----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_r7_1_r2_2_a_request_becomes_a_case_on_the_desk_and_is_read_back(api, spec, seeded, clock, fmt):
    key = add_client(seeded, clock)
    status, body, _r = spec.post(fmt, api_key=key, **WATER, first_name="三", last_name="张", phone="13812345678",
                                 email="zhang@example.com", media_url="https://img.example.com/leak.jpg",
                                 account_id="acct-7")
    assert status == 200, body
    (created,) = body
    number = created["service_request_id"]
    assert created["service_notice"] and "token" not in created
    assert created["account_id"] is None  # no citizen accounts here; the client's id is kept, not returned
    # R2.2: on the front desk's list like a phone case, not yet owned (R4.1), through the same intake
    desk = ok(api.get("/api/v1/cases", "op1", params={"status": "new"}))
    case = next(c for c in desk if c["number"] == number)
    assert case["channel"] == "web" and case["kind"] == "complaint" and case["category_code"] == "water_supply"
    full = ok(api.get(f"/api/v1/cases/{number}", "op1"))
    assert "自来水管漏水" in full["description"] and "https://img.example.com/leak.jpg" in full["description"]
    # read back, as the spec's client would
    s, (one,) = spec.request(number)
    assert s == 200 and one["service_request_id"] == number and one["status"] == "open"
    assert one["service_code"] == "water_supply" and one["service_name"] == "供水"
    assert one["requested_datetime"].endswith("+08:00") and one["status_notes"]
    assert one["lat"] == 31.362 and one["long"] == 119.812  # about 100 m: the place, not the door
    s, listed = spec.requests()
    assert s == 200 and number in [r["service_request_id"] for r in listed]


def test_a1_the_post_and_the_case_are_in_the_audit_record(spec, seeded, clock):
    key = add_client(seeded, clock)
    status, (created,), _r = spec.post("json", api_key=key, **WATER)
    assert status == 200
    refused_status, _body, _r = spec.post("json", api_key=key, service_code="water_supply")
    assert refused_status == 400
    with session_scope(seeded) as s:
        case = s.execute(select(Case).where(Case.number == created["service_request_id"])).scalar_one()
        events = s.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
        mine = [(e.action, e.actor_name) for e in events if e.case_id == case.id]
        assert ("accept", "open311:city-app") in mine and ("open311_request", "open311:city-app") in mine
        assert {e.action for e in events} >= {"open311_client_add", "open311_refused"}
        refusal = next(e for e in events if e.action == "open311_refused")
        assert refusal.data["client"] == "city-app" and refusal.data["status"] == 400
        assert audit.verify(s).ok


def test_r7_3_an_open311_case_is_taken_and_dispatched_like_any_other(api, spec, seeded, clock):
    key = add_client(seeded, clock)
    _s, (created,), _r = spec.post("xml", api_key=key, **{**WATER, "service_code": "city_appearance"},
                                   address_string="宜城街道人民路与解放路交叉口")
    number = created["service_request_id"]
    taken = ok(api.post(f"/api/v1/cases/{number}/take", "op1"))
    ok(api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={"expected_version": taken["version"]}))
    _s, (one,) = spec.request(number)
    assert one["status"] == "open" and "交办" in one["status_notes"]
    assert one["agency_responsible"] == "宜兴市城市管理局"
    assert one["expected_datetime"]  # the R8.3 deadline
    assert one["address"] == "宜城街道人民路与解放路交叉口"  # a crossing names nobody's door


# ---- personal data, R7.3c ---------------------------------------------------------------------

def test_r7_6_personal_data_is_never_returned(api, spec, seeded, clock):
    key = add_client(seeded, clock)
    secret = {"first_name": "三丰", "last_name": "张", "phone": "13812345678", "email": "zsf@example.com",
              "device_id": "device-9f8e7d", "media_url": "https://img.example.com/face.jpg",
              "address_string": "宜城街道人民路12号3单元502室",
              "description": "我叫张三丰，电话13812345678，住人民路12号，楼下漏水"}
    _s, (created,), posted = spec.post("json", api_key=key, **{**WATER, **secret})
    number = created["service_request_id"]
    assert not [v for v in secret.values() if v in posted.text]  # not even to the client that sent it
    for fmt in FORMATS:
        for resource, params in ((f"requests/{number}", {}), ("requests", {}),
                                 ("requests", {"service_request_id": number})):
            r = spec.http.get(f"/open311/v2/{resource}.{fmt}", params=params)
            assert r.status_code == 200
            text = r.content.decode()
            assert number in text
            for value in (*secret.values(), "13812345678", "张三丰", "zsf@example.com", "12号", "漏水"):
                assert value not in text, (fmt, resource, value)
    _s, (one,) = spec.request(number)
    assert one["address"] is None and one["media_url"] is None and one["description"] is None


def test_r7_3c_a_discipline_report_is_never_listed_nor_found(api, spec):
    report = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "landline", "title": "举报某局长", "description": "某局长收受财物",
        "category_code": "discipline_economic", "citizen_phone": "13900007777"}), 201)
    other = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "mobile", "title": "占道经营", "description": "人民路占道经营",
        "category_code": "city_appearance", "citizen_phone": "13700000001"}), 201)
    _s, listed = spec.requests()
    numbers = [r["service_request_id"] for r in listed]
    assert other["number"] in numbers and report["number"] not in numbers
    assert spec.requests(service_request_id=f"{report['number']},{other['number']}")[1][0][
        "service_request_id"] == other["number"]
    assert len(spec.requests(service_request_id=report["number"])[1]) == 0
    refused(spec, 404, f"requests/{report['number']}")  # the same answer as a number that never existed
    # a phone case is listed without its words (not published, R7.6)
    one = next(r for r in listed if r["service_request_id"] == other["number"])
    assert one["description"] is None and one["address"] is None
    assert "占道" not in json.dumps(listed, ensure_ascii=False)


# ---- GET requests: filters, defaults, statuses -------------------------------------------------

def test_get_requests_filters_and_the_90_day_default(api, spec, seeded, clock):
    key = add_client(seeded, clock)
    first = spec.post("json", api_key=key, **WATER)[1][0]["service_request_id"]
    clock.advance(days=40)
    second = spec.post("json", api_key=key, **one_kind("noise_nuisance"))[1][0]["service_request_id"]
    # R3.1: the desk refuses the second; it reads closed, with the ground
    ok(api.post(f"/api/v1/cases/{second}/reject", "op1",
                json={"reason": "outside_jurisdiction", "referral": "无锡市12345"}))
    numbers = lambda **p: [r["service_request_id"] for r in spec.requests(**p)[1]]
    assert numbers() == [second, first]  # newest first
    assert numbers(status="closed") == [second] and numbers(status="open") == [first]
    assert numbers(status="open,closed") == [second, first]
    assert numbers(service_code="water_supply") == [first]
    assert numbers(service_code="water_supply,noise_nuisance") == [second, first]
    closed = spec.request(second)[1][0]
    assert closed["status"] == "closed" and closed["status_notes"] == "不予受理：不属于本市管辖"
    # the id list overrides every other argument
    assert numbers(service_request_id=f"{first},{second}", status="open", service_code="x") == [second, first]
    clock.advance(days=55)  # the first is now 95 days old: outside the default window
    assert numbers() == [second]
    assert numbers(start_date="2026-03-01T00:00:00+08:00") == [second, first]  # 90 days from the start
    assert first in numbers(start_date="2026-03-01T00:00:00Z", end_date="2026-05-01T00:00:00Z")
    assert numbers(end_date="2026-03-03") == [first]  # a date alone: local midnight; 90 days before it


def test_get_requests_errors(spec):
    for params in ({"status": "pending"}, {"start_date": "yesterday"}, {"start_date": "2026-03-01T10:00:00"},
                   {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"},
                   {"start_date": "2026-03-02T00:00:00Z", "end_date": "2026-03-01T00:00:00Z"}):
        refused(spec, 400, "requests", **params)
    refused(spec, 404, "requests/20260302-999999")
    refused(spec, 404, "requests/not-a-number")
    # every service is realtime: POST never hands out a token, so none is found
    refused(spec, 404, "tokens/12345")


# ---- POST errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_post_errors_as_the_spec_says(spec, seeded, clock, fmt):
    key = add_client(seeded, clock)
    revoked = add_client(seeded, clock, "old-app")
    with session_scope(seeded) as s:
        clients.revoke_client(s, CONSOLE, "old-app", now=clock())
    cases = [
        (403, {**WATER}),                                        # no api_key
        (403, {**WATER, "api_key": "not-a-key"}),
        (403, {**WATER, "api_key": revoked}),                    # revoked client
        (400, {"api_key": key, "lat": "31.3", "long": "119.8"}),  # service_code not provided
        (404, {**WATER, "api_key": key, "service_code": "no_such_service"}),
        (404, {**WATER, "api_key": key, "service_code": "discipline_economic"}),  # R7.3c: not offered
        (400, {"api_key": key, "service_code": "water_supply", "attribute[kind]": "complaint"}),  # no location
        (400, {**WATER, "api_key": key, "long": ""}),             # lat without long
        (400, {**WATER, "api_key": key, "lat": "91"}),
        (400, {**{k: v for k, v in WATER.items() if k != "attribute[kind]"}, "api_key": key}),  # required attribute
        (400, {**WATER, "api_key": key, "attribute[kind]": "urgent_help"}),  # not among the values
        (400, {**WATER, "api_key": key, "attribute[colour]": "red"}),         # no such attribute
        (400, {**WATER, "api_key": key, "description": "长" * 4001}),         # over 4,000 characters
        (400, {**WATER, "api_key": key, "media_url": "javascript:alert(1)"}),
        (400, {**WATER, "api_key": key, "email": "not an address", "phone": "call me"}),  # both listed
    ]
    for status, fields in cases:
        code, body, _r = spec.post(fmt, **fields)
        assert code == status, (fields, code, body)
        errors = _errors(body)
        if "email" in fields:
            assert len(errors) == 2, errors
    code, body, _r = spec.post(fmt, content_type="application/json", **WATER, api_key=key)
    assert code == 400 and _errors(body)
    with session_scope(seeded) as s:
        assert s.execute(select(Case)).first() is None  # nothing refused became a case


def test_rate_limit_per_client_answers_429_with_retry_after(spec, seeded, clock):
    key = add_client(seeded, clock, rate_limit=2)
    other = add_client(seeded, clock, "other-app", rate_limit=2)
    assert [spec.post("json", api_key=key, **WATER)[0] for _ in range(2)] == [200, 200]
    for fmt in FORMATS:
        code, body, r = spec.post(fmt, api_key=key, **WATER)
        assert code == 429 and int(r.headers["retry-after"]) >= 1
        assert "rate limit" in _errors(body)[0][1]
    assert spec.post("json", api_key=other, **WATER)[0] == 200  # per client
    clock.advance(seconds=61)
    assert spec.post("json", api_key=key, **WATER)[0] == 200
