"""R5.3, R6.1, R7.3c: no state-changing operation shows a role what it must not see. Every POST,
PUT, PATCH and DELETE of the OpenAPI schema (read from the app, so a new route is covered without
editing this test) is called by each role on the canary store's cases, work orders, extension
request and call (tests/canary_store.py), with a body built from the schema (tests/canary_bodies.py:
required fields, canary-free values, the current ``expected_version``). Every answer is scanned,
refusals included: a 403/404/409/422 message must not echo content either.

Writes change the store, so the unit roles and the center roles each work on a store of their own,
made afresh, in a fixed order (see GROUPS): a later role meets the states an earlier one left (a
closed or re-dispatched case), which a store per role would not show, at a quarter of the cost. The
call of the discipline report is live on a fake PBX, so call control acts instead of answering 503
(the queue writes, /operators/me/*, answer 503 here; their reads and streams run with a call link in
tests/test_canaries_streams.py). After a role's writes the public pages are read again: a write must not have published what the public
may not read (a case the center published is public, the discipline report never). What the other
reads show in the states the writes leave is the GET sweep's subject (tests/test_canaries.py)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from callcenter.callcontrol.transfer import CallControl
from tests import canary_bodies, canary_store as store
from tests.test_transfer_api import FakePbx
from ticketing.models import User
from ticketing.store import session_scope

PUBLIC = ("/public", "/api/v1/public/cases")


def _live_call(api, seeded) -> None:
    """The discipline report's call, answered by op1 (extension 8001), live on a fake PBX."""
    with session_scope(seeded) as s:
        s.execute(select(User).where(User.username == "op1")).scalar_one().operator_extension = "8001"
    pbx = FakePbx()
    pbx.add_call(store.CALL_UNIQUEID, "PJSIP/trunk-00000007", "PJSIP/op8001-00000001")
    api.client.app.state.call_transfers = CallControl(pbx, ring_seconds=1)


def _send(api, method: str, url: str, who: str | None, json):
    r = api.client.request(method.upper(), url, headers=api._headers(who), json=json)
    if r.status_code == 401 and who is not None:  # an earlier write logged the role out: log in again
        api.tokens.pop(who, None)
        r = api.client.request(method.upper(), url, headers=api._headers(who), json=json)
    return r


def _context(api, spec, op, path: str, url: str, made: dict, case_of_wo: dict, versions: dict) -> dict:
    """The case the write concerns (from the path, else the discipline report) and, only when the
    body has ``expected_version``, its current version (read by the supervisor, kept until a write
    succeeds)."""
    parts = dict(zip(path.split("/"), url.split("/")))
    number = parts.get("{number}") or case_of_wo.get(parts.get("{wo_id}")) or made["numbers"][0]
    ctx = {"case_number": number}
    media = (op.get("requestBody") or {}).get("content", {}).get("application/json")
    if media and "expected_version" in canary_bodies.resolve(spec, media["schema"]).get("properties", {}):
        if number not in versions:
            versions[number] = api.get(f"/api/v1/cases/{number}", "sup1").json().get("version")
        ctx["version"] = versions[number]
    return ctx


def _public_forbidden(api, made: dict) -> tuple[str, ...]:
    """R6.1, R7.3c: a case the center published (reviewed summary and answer) is public; the
    discipline report never is, nor any case not published."""
    numbers = {store.DISC: made["numbers"][:2], store.URBAN: made["numbers"][2:3], store.RETURNED: made["numbers"][3:]}
    published = {n for ns in numbers.values() for n in ns
                 if api.get(f"/api/v1/cases/{n}", "sup1").json().get("published_at")}
    return tuple(c for c, ns in numbers.items() if c == store.DISC or not published.issuperset(ns))


# The unit roles' writes touch their own orders; the center's move whole cases on (dispatch, close,
# publish): each group has a store of its own, the roles of a group take turns in this order.
GROUPS = {"units": [None, "water1", "housing1", "power1", "urban1", "disc1"],
          "center": ["op1", "sup1", "admin1", "bo1"]}
assert sorted(GROUPS["units"] + GROUPS["center"], key=str) == sorted(store.FORBIDDEN, key=str)


def _sweep(api, spec, writes, who, made, case_of_wo) -> tuple[list, list]:
    leaks, statuses, versions = [], [], {}
    if who is None:  # refused at the door (401) whatever the object: each operation once
        writes = list({(method, path): (method, path, url, op) for method, path, url, op in writes}.values())
    for method, path, url, op in writes:
        json = canary_bodies.request_body(spec, op, _context(api, spec, op, path, url, made, case_of_wo, versions))
        r = _send(api, method, url, who, json)
        statuses.append(r.status_code)
        if r.status_code < 300:
            versions.clear()
        leaks += [(who, method, url, r.status_code, c) for c in store.leaks_in(r.text, who)]
    # after the role's writes: the public pages (a write must not have published what it may not)
    forbidden = _public_forbidden(api, made)
    for url in PUBLIC:
        leaks += [(f"public after {who}", "get", url, c) for c in forbidden if c in api.get(url).text]
    return leaks, statuses


@pytest.mark.parametrize("group", list(GROUPS))
def test_r5_3_r7_3c_no_write_answer_shows_a_role_what_it_must_not_see(api, seeded, group):
    made = store.build(api, seeded)
    _live_call(api, seeded)
    spec = store.openapi(api.client.app)
    params = store.samples(made)
    case_of_wo = {str(i): api.get(f"/api/v1/work-orders/{i}", "sup1").json()["case_number"] for i in made["wo_ids"]}
    writes = list(store.operations(spec, store.WRITE_METHODS, params))
    assert len(writes) > 60
    leaks, answered = [], {}
    for who in GROUPS[group]:
        found, answered[who] = _sweep(api, spec, writes, who, made, case_of_wo)
        leaks += found
    assert not leaks, leaks[:20]
    assert all(500 not in s for s in answered.values())
    for who, statuses in answered.items():  # the sweep reached the rules, not only the door
        if who is not None:
            assert any(s < 300 for s in statuses) and any(s in (403, 404, 409) for s in statuses), (who, statuses)
