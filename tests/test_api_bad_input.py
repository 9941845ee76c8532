"""Bad input to the API, on SQLite and PostgreSQL: every refusal is a clear 4xx that names what
was wrong, and a refused request leaves the store exactly as it was — same cases, same work
orders, same audit chain (A1)."""
from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
from sqlalchemy import inspect, text

from .conftest import USERS

CASE = {"kind": "consultation", "channel": "mobile", "title": "停水咨询",
        "description": "宜城街道某小区停水，何时恢复？", "citizen_phone": "13800001111"}


def store_state(engine) -> dict:
    with engine.connect() as conn:
        state = {name: conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
                 for name in ("cases", "work_orders", "extension_requests", "audit_events", "users")}
        head = conn.execute(text("SELECT last_id, last_hash, count FROM audit_head")).one()
        state["audit_head"] = tuple(head)
        state["versions"] = sorted(conn.execute(text("SELECT number, version, status FROM cases")).all())
    return state


def assert_chain_intact(api) -> dict:
    report = api.get("/api/v1/audit/verify", "sup1").json()
    assert report["ok"] is True, report["problems"]
    return report


@contextmanager
def nothing_stored(api, engine):
    """A1: a refused request writes nothing and appends nothing to the audit chain. Everyone logs
    in first: a login is itself an audit event."""
    for username, _role, _unit in USERS:
        api.login(username)
    before = store_state(engine)
    yield
    assert store_state(engine) == before
    assert assert_chain_intact(api)["checked"] == before["audit_head"][2]


@pytest.fixture
def case_number(api) -> str:
    r = api.post("/api/v1/cases", "op1", json=CASE)
    assert r.status_code == 201, r.text
    return r.json()["number"]


@pytest.fixture
def work_order(api, case_number) -> tuple[str, int]:
    r = api.post(f"/api/v1/cases/{case_number}/dispatch", "op1", json={"units": ["water_supply"]})
    assert r.status_code == 200, r.text
    return case_number, r.json()["work_orders"][0]["id"]


def _refused(r, status: int, *needles: str, error: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    if error is not None:
        assert body["error"] == error, body
    for needle in needles:
        assert needle in body["detail"], body
    return body


# ---- unknown codes ------------------------------------------------------------------------

def test_a1_dispatch_to_unknown_unit_is_422_naming_the_unit(api, engine, case_number):
    with nothing_stored(api, engine):
        r = api.post(f"/api/v1/cases/{case_number}/dispatch", "op1", json={"units": ["no_such_unit"]})
        _refused(r, 422, "no_such_unit", error="R3.1")


def test_a1_one_unknown_unit_among_several_dispatches_none(api, engine, case_number):
    """The known unit gets no work order either: the dispatch is all or nothing."""
    with nothing_stored(api, engine):
        r = api.post(f"/api/v1/cases/{case_number}/dispatch", "bo1",
                     json={"units": ["water_supply", "ghost_bureau"], "lead": "water_supply"})
        _refused(r, 422, "ghost_bureau", error="R3.1")
        r = api.post(f"/api/v1/cases/{case_number}/dispatch", "bo1",
                     json={"units": ["water_supply", "urban_management"], "lead": "ghost_bureau"})
        _refused(r, 422, "ghost_bureau", error="R7.3h")
    assert api.get(f"/api/v1/cases/{case_number}", "op1").json()["work_orders"] == []


def test_a1_unknown_category_and_unknown_user_unit_are_422(api, engine):
    with nothing_stored(api, engine):
        r = api.post("/api/v1/cases", "op1", json={**CASE, "category_code": "no_such_category"})
        _refused(r, 422, "no_such_category", error="R2.1")
        r = api.post("/api/v1/users", "admin1", json={"username": "newstaff", "password": "long-enough-pw",
                                                       "role": "unit_staff", "unit_code": "no_such_unit"})
        _refused(r, 422, "no_such_unit")


def test_a1_unit_code_outside_the_code_alphabet_is_422(api, engine, case_number):
    with nothing_stored(api, engine):
        r = api.post(f"/api/v1/cases/{case_number}/dispatch", "op1", json={"units": ["Water Supply!"]})
        _refused(r, 422, "units", error="invalid_input")


# ---- who may do what ---------------------------------------------------------------------

WRONG_ROLE = [
    # (user, method, path template, body, rule)
    ("water1", "post", "/api/v1/cases", CASE, "R5.1"),
    ("op1", "post", "/api/v1/cases/{n}/publish", {}, "R5.2"),
    ("op2", "post", "/api/v1/cases/{n}/dispatch", {"units": ["water_supply"]}, "R4.1"),
    ("water1", "post", "/api/v1/cases/{n}/dispatch", {"units": ["water_supply"]}, "R5.3"),
    ("op1", "post", "/api/v1/users", {"username": "mallory", "password": "long-enough-pw", "role": "admin"}, "users"),
    ("water1", "get", "/api/v1/audit/verify", None, "A1"),
    ("op1", "get", "/api/v1/assessment", None, "R5.2"),
]


def test_a1_wrong_role_is_403_naming_the_rule(api, engine, case_number):
    with nothing_stored(api, engine):
        for user, method, path, body, rule in WRONG_ROLE:
            kw = {"json": body} if body is not None else {}
            r = getattr(api, method)(path.format(n=case_number), user, **kw)
            _refused(r, 403, error=rule)


def test_r5_3_another_units_work_order_is_403(api, engine, work_order):
    _number, wo_id = work_order
    with nothing_stored(api, engine):
        _refused(api.post(f"/api/v1/work-orders/{wo_id}/receive", "urban1"), 403, error="R5.3")
        _refused(api.post(f"/api/v1/work-orders/{wo_id}/report", "urban1", json={"answer": "not ours"}), 403,
                 error="R5.3")


# ---- authentication ------------------------------------------------------------------------

BAD_AUTHORIZATION = [None, "", "Bearer", "Bearer ", "Bearer not-a-real-token", "Basic b3AxOmNvcnJlY3QtaG9yc2U=",
                     "bearer\x7f", "Token " + "a" * 43]


def test_a1_no_or_bad_token_is_401(api, engine):
    with nothing_stored(api, engine):
        for authorization in BAD_AUTHORIZATION:
            headers = {} if authorization is None else {"Authorization": authorization}
            _refused(api.client.post("/api/v1/cases", json=CASE, headers=headers), 401, error="unauthorized")
            _refused(api.client.get("/api/v1/cases", headers=headers), 401, error="unauthorized")
            _refused(api.client.get("/api/v1/audit/verify", headers=headers), 401, error="unauthorized")


def test_a1_expired_and_revoked_tokens_are_401(api, engine, clock):
    token = api.login("op2")
    assert api.client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    with nothing_stored(api, engine):
        r = api.client.post("/api/v1/cases", json=CASE, headers={"Authorization": f"Bearer {token}"})
        _refused(r, 401, "log in again", error="unauthorized")
    token = api.login("op1")
    clock.advance(hours=13)  # past the 12-hour lifetime
    r = api.client.post("/api/v1/cases", json=CASE, headers={"Authorization": f"Bearer {token}"})
    _refused(r, 401, "expired", error="unauthorized")


def test_wrong_password_is_401_without_saying_which_part_was_wrong(api):
    a = api.client.post("/api/v1/auth/token", json={"username": "op1", "password": "wrong-password"})
    b = api.client.post("/api/v1/auth/token", json={"username": "nobody", "password": "wrong-password"})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()


# ---- malformed bodies -------------------------------------------------------------------------

MALFORMED = [b'{"kind": ', b"{'kind': 'consultation'}", b'{"kind": "consultation",}', b"kind=consultation",
             b'{"kind": "consultation" "channel": "web"}']


def test_a1_malformed_json_is_422_saying_so(api, engine):
    headers = {"Authorization": f"Bearer {api.login('op1')}", "Content-Type": "application/json"}
    with nothing_stored(api, engine):
        for raw in MALFORMED:
            r = api.client.post("/api/v1/cases", content=raw, headers=headers)
            _refused(r, 422, "malformed JSON", "at character", error="invalid_input")
        # JSON, but not an object with the fields
        for raw in (b"", b"[]", b"null", b'"a case"', b"42"):
            _refused(api.client.post("/api/v1/cases", content=raw, headers=headers), 422, error="invalid_input")


# ---- sizes -----------------------------------------------------------------------------------

def test_a1_one_megabyte_description_is_413_and_nothing_is_stored(api, engine):
    body = json.dumps({**CASE, "description": "水" * (1024 * 1024)}).encode()
    headers = {"Authorization": f"Bearer {api.login('op1')}", "Content-Type": "application/json"}
    with nothing_stored(api, engine):
        r = api.client.post("/api/v1/cases", content=body, headers=headers)
        _refused(r, 413, "256 KiB", error="too_large")


def test_a1_one_megabyte_chunked_body_is_413_too(api, engine):
    """No Content-Length to check: the limit must hold while the body streams in."""
    headers = {"Authorization": f"Bearer {api.login('op1')}", "Content-Type": "application/json"}

    def chunks():
        yield b'{"kind": "consultation", "channel": "web", "title": "t", "description": "'
        for _ in range(1024):
            yield b"x" * 1024
        yield b'"}'

    with nothing_stored(api, engine):
        r = api.client.post("/api/v1/cases", content=chunks(), headers=headers)
        _refused(r, 413, "256 KiB", error="too_large")


def test_a1_chunked_body_under_the_limit_still_works(api):
    headers = {"Authorization": f"Bearer {api.login('op1')}", "Content-Type": "application/json"}
    payload = json.dumps(CASE).encode()
    r = api.client.post("/api/v1/cases", content=iter([payload[:10], payload[10:]]), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["description"] == CASE["description"]


def test_a1_description_over_5000_characters_is_422(api, engine):
    with nothing_stored(api, engine):
        r = api.post("/api/v1/cases", "op1", json={**CASE, "description": "噪" * 6000})
        _refused(r, 422, "description", "5000", error="invalid_input")
        r = api.post("/api/v1/cases", "op1", json={**CASE, "title": "t" * 201})
        _refused(r, 422, "title", "200", error="invalid_input")


def test_description_of_exactly_5000_characters_is_kept_whole(api):
    r = api.post("/api/v1/cases", "op1", json={**CASE, "description": "噪" * 5000})
    assert r.status_code == 201, r.text
    number = r.json()["number"]
    assert api.get(f"/api/v1/cases/{number}", "op1").json()["description"] == "噪" * 5000


# ---- SQL, control characters, types --------------------------------------------------------

SQL = "'; DROP TABLE cases; --"


def test_a1_sql_in_fields_is_stored_verbatim_and_tables_stay(api, engine):
    fields = {"title": SQL, "description": f"Robert'); DROP TABLE audit_events;-- {SQL}",
              "citizen_name": "x' OR '1'='1", "location": '"; DELETE FROM users; --'}
    r = api.post("/api/v1/cases", "op1", json={**CASE, **fields})
    assert r.status_code == 201, r.text
    number = r.json()["number"]
    got = api.get(f"/api/v1/cases/{number}", "op1").json()
    for key, value in fields.items():
        assert got[key] == value
    tables = set(inspect(engine).get_table_names())
    assert {"cases", "audit_events", "users", "work_orders"} <= tables
    state = store_state(engine)
    assert state["cases"] == 1 and state["users"] > 0
    # the same strings where the API searches
    with nothing_stored(api, engine):
        assert api.get("/api/v1/knowledge", "op1", params={"q": "' OR '1'='1"}).json() == []
        _refused(api.get("/api/v1/cases", "op1", params={"caller": SQL}), 422, "caller")
        _refused(api.get(f"/api/v1/cases/{SQL}", "op1"), 422, error="case_number")
        _refused(api.get("/api/v1/units/x' OR '1'='1", "op1"), 404, error="not_found")
    assert_chain_intact(api)


def test_a1_nul_character_is_422_on_every_backend(api, engine, case_number):
    """PostgreSQL cannot store NUL in text; it must be a clear 422, not a server error."""
    with nothing_stored(api, engine):
        r = api.post("/api/v1/cases", "op1", json={**CASE, "description": "停水\x00咨询"})
        _refused(r, 422, "description", "NUL", error="invalid_input")
        r = api.post(f"/api/v1/cases/{case_number}/escalate", "op1", json={"note": "\x00"})
        _refused(r, 422, "note", error="invalid_input")
        r = api.client.post("/api/v1/auth/token", json={"username": "op1\x00", "password": "x"})
        _refused(r, 422, "username", error="invalid_input")


def test_a1_nul_in_path_or_query_is_never_a_server_error(api, engine):
    with nothing_stored(api, engine):
        for path in ("/api/v1/units/water%00supply", "/api/v1/knowledge?q=%00", "/api/v1/cases/2026%00"):
            r = api.get(path, "op1")
            assert r.status_code in (200, 404, 422), (path, r.text)
            assert "error" in r.json() or r.json() == []


WRONG_TYPES = [("title", 123), ("title", ["a"]), ("description", None), ("kind", 1),
               ("citizen_phone", "call me maybe"), ("citizen_id_number", "3202821990010112345"),
               ("citizen_phone", 13800001111)]


def test_a1_wrong_types_are_422_naming_the_field(api, engine):
    with nothing_stored(api, engine):
        for field, value in WRONG_TYPES:
            _refused(api.post("/api/v1/cases", "op1", json={**CASE, field: value}), 422, field, error="invalid_input")


def test_a1_missing_required_fields_are_422_naming_them(api, engine):
    with nothing_stored(api, engine):
        body = _refused(api.post("/api/v1/cases", "op1", json={"kind": "consultation"}), 422, error="invalid_input")
        for field in ("channel", "title", "description"):
            assert field in body["detail"]


# ---- unknown fields: no mass assignment --------------------------------------------------------

UNKNOWN_FIELDS = [
    ("/api/v1/cases", {**CASE, "status": "closed"}, "status"),
    ("/api/v1/cases", {**CASE, "owner_id": 1}, "owner_id"),
    ("/api/v1/cases/{n}/dispatch", {"units": ["water_supply"], "version": 99}, "version"),
    ("/api/v1/cases/{n}/escalate", {"note": "x", "dispatch_due_at": "2030-01-01T00:00:00+08:00"}, "dispatch_due_at"),
    ("/api/v1/cases/{n}/close", {"confidential": True}, "confidential"),
]


def test_a1_unknown_fields_are_422_naming_them(api, engine, case_number):
    """No mass assignment: a field the operation does not take is refused, not ignored."""
    with nothing_stored(api, engine):
        for path, body, field in UNKNOWN_FIELDS:
            _refused(api.post(path.format(n=case_number), "op1", json=body), 422, field, error="invalid_input")


# ---- enums -----------------------------------------------------------------------------------

WRONG_ENUMS = [
    ("/api/v1/cases", {**CASE, "kind": "rant"}, "kind"),
    ("/api/v1/cases", {**CASE, "channel": "pigeon"}, "channel"),
    ("/api/v1/cases", {**CASE, "kind": "CONSULTATION"}, "kind"),
    ("/api/v1/cases/{n}/dispatch", {"units": ["water_supply"], "mode": "telepathy"}, "mode"),
    ("/api/v1/cases/{n}/answer", {"answer": "已答复", "satisfaction": "happy"}, "satisfaction"),
    ("/api/v1/cases/{n}/reject", {"reason": "because", "referral": "市中院 0510-1234567"}, "reason"),
    ("/api/v1/cases", {**CASE, "reject": {"reason": "outside", "referral": "x"}}, "reject.reason"),
]


def test_a1_wrong_enum_values_are_422_naming_the_field(api, engine, case_number):
    with nothing_stored(api, engine):
        for path, body, field in WRONG_ENUMS:
            _refused(api.post(path.format(n=case_number), "op1", json=body), 422, field, error="invalid_input")


BAD_QUERIES = ["/api/v1/cases?status=zzz", "/api/v1/cases?kind=rant", "/api/v1/work-orders?due=yesterday",
               "/api/v1/work-orders?status=lost", "/api/v1/cases?limit=0", "/api/v1/cases?limit=100000",
               "/api/v1/cases?offset=-1", "/api/v1/extensions?state=maybe"]


def test_bad_query_parameters_are_422_naming_them(api):
    for path in BAD_QUERIES:
        name = path.split("?")[1].split("=")[0]
        _refused(api.get(path, "op1"), 422, name, error="invalid_input")


# ---- case numbers and ids ----------------------------------------------------------------------

BAD_NUMBERS = ["abc", "2026-03-02", "20260302-00001", "20260302-0000001", "x" * 2000, "1' OR '1'='1"]


def test_a1_bad_case_number_format_is_422(api, engine):
    with nothing_stored(api, engine):
        for number in BAD_NUMBERS:
            _refused(api.get(f"/api/v1/cases/{number}", "op1"), 422, "not a case number", error="case_number")
            r = api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={"units": ["water_supply"]})
            _refused(r, 422, error="case_number")


def test_a1_unknown_case_is_404(api, engine, case_number):
    with nothing_stored(api, engine):
        _refused(api.get("/api/v1/cases/20260302-999999", "op1"), 404, "20260302-999999", error="not_found")
        _refused(api.get("/api/v1/cases/20260302999999", "op1"), 404, error="not_found")  # same number, no dash
        r = api.post("/api/v1/cases/20260302-999999/dispatch", "op1", json={"units": ["water_supply"]})
        _refused(r, 404, error="not_found")


def test_a1_out_of_range_ids_are_422_not_server_errors(api, engine):
    with nothing_stored(api, engine):
        for wo_id in ("0", "-1", "2147483648", "99999999999999999999", "abc", "1.5"):
            _refused(api.get(f"/api/v1/work-orders/{wo_id}", "op1"), 422, "wo_id", error="invalid_input")
            _refused(api.post(f"/api/v1/work-orders/{wo_id}/receive", "water1"), 422, "wo_id", error="invalid_input")
            r = api.post(f"/api/v1/extensions/{wo_id}/decision", "bo1", json={"approve": True})
            _refused(r, 422, "ext_id", error="invalid_input")
            r = api.put(f"/api/v1/knowledge/{wo_id}", "bo1", json={"question": "q", "answer": "a"})
            _refused(r, 422, "entry_id", error="invalid_input")


def test_a1_unknown_work_order_and_extension_are_404(api, engine):
    with nothing_stored(api, engine):
        _refused(api.get("/api/v1/work-orders/2147483647", "op1"), 404, error="not_found")
        r = api.post("/api/v1/extensions/424242/decision", "bo1", json={"approve": True})
        _refused(r, 404, error="not_found")


# ---- extensions (R8.5) and datetimes -------------------------------------------------------

def test_r8_5_extension_days_out_of_range_are_422(api, engine, work_order):
    _number, wo_id = work_order
    with nothing_stored(api, engine):
        for days in (-1, 0, 61, 10**9, -(10**12), 2.5, "ten", None):
            r = api.post(f"/api/v1/work-orders/{wo_id}/extensions", "water1",
                         json={"legal_basis": "《信访条例》第三十三条", "extra_working_days": days})
            _refused(r, 422, "extra_working_days", error="invalid_input")


def test_r8_5_extension_of_60_working_days_is_the_longest_accepted(api, engine, work_order):
    _number, wo_id = work_order
    r = api.post(f"/api/v1/work-orders/{wo_id}/extensions", "water1",
                 json={"legal_basis": "《信访条例》第三十三条", "extra_working_days": 60})
    assert r.status_code == 201, r.text
    assert store_state(engine)["extension_requests"] == 1


def test_a1_times_without_a_zone_are_422_not_server_errors(api, engine):
    with nothing_stored(api, engine):
        r = api.post("/api/v1/units/water_supply/roster", "water1",
                     json={"duty": "A", "name": "王五", "phone": "13900001111", "effective_from": "2026-03-02T10:00:00"})
        _refused(r, 422, "effective_from", "timezone", error="invalid_input")
        r = api.get("/api/v1/units/water_supply", "op1", params={"at": "2026-03-02T10:00:00"})
        _refused(r, 422, "at", error="invalid_input")
        # the assessment's period is in local days (YYYY-MM-DD), not moments: a time is refused
        r = api.get("/api/v1/assessment", "bo1", params={"since": "2026-03-01T10:00:00", "until": "2026-03-02"})
        _refused(r, 422, "since", error="invalid_input")


# ---- integers and enums validated at the edge (issue 11 §6) -----------------------------------

def test_a1_unknown_unit_type_is_422_not_a_server_error(api, engine):
    """A1: an enum the store does not know is refused by the API, not by the driver (was a 500)."""
    with nothing_stored(api, engine):
        _refused(api.get("/api/v1/units?type=spaceport", "op1"), 422, "type", error="invalid_input")
    assert {u["type"] for u in api.get("/api/v1/units?type=discipline", "op1").json()} == {"discipline"}


@pytest.mark.parametrize("path,who", [("/api/v1/cases", "op1"), ("/api/v1/work-orders", "op1"),
                                      ("/api/v1/public/cases", None)])
def test_a1_huge_offset_is_422_not_an_overflow(api, engine, path, who):
    """A1: an offset past the store's integers (>= 2**63 overflowed the driver: a 500) is refused."""
    with nothing_stored(api, engine):
        for offset in (2**63, 2**63 + 1, 10**30):
            _refused(api.get(f"{path}?offset={offset}", who), 422, "offset", error="invalid_input")
    assert api.get(f"{path}?offset=2147483647", who).json() == []
