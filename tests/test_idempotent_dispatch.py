"""Issue 11 §7, R7.3/R7.5/R8.4, A1: a repeated or concurrent dispatch, re-dispatch, close or report
applies once.

Re-dispatch, close and report must name the case version they acted on (``expected_version``;
without it a 422 naming the field): of 20 concurrent ones against a real server only the first
applies and the rest get 409 saying the case moved on, and the same request sent again later is
refused too. A first dispatch has nothing under way to name; a concurrent or repeated one finds the
case moved on or dispatched before.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from ticketing.enums import WorkOrderStatus
from ticketing.models import AuditEvent, Case, WorkOrder

from .conftest import CONFIG_DIR, PASSWORD
from .helpers import serve

CASE = {"kind": "complaint", "channel": "mobile", "title": "路灯不亮",
        "description": "某路口路灯连续三晚不亮", "citizen_phone": "13800002222", "dispatch": {"units": ["water_supply"]}}
N = 20


@pytest.fixture
def server(seeded, domain, engine, tmp_path):
    from callcenter.api.app import create_app
    from callcenter.settings import Settings

    app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine)
    with serve(app) as base_url:
        yield base_url


def _token(base_url: str, username: str) -> dict:
    r = httpx.post(f"{base_url}/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _dispatched_case(base_url: str) -> dict:
    r = httpx.post(f"{base_url}/api/v1/cases", json=CASE, headers=_token(base_url, "op1"))
    assert r.status_code == 201, r.text
    return r.json()


def _together(calls) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_r7_3_twenty_concurrent_redispatches_apply_once(server, sessions):
    case = _dispatched_case(server)
    bo = _token(server, "bo1")
    url = f"{server}/api/v1/cases/{case['number']}/dispatch"
    body = {"units": ["urban_management"], "expected_version": case["version"]}
    with httpx.Client(timeout=30) as client:
        answers = _together([lambda: client.post(url, json=body, headers=bo) for _ in range(N)])
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [409] * (N - 1), [(r.status_code, r.text) for r in answers]
    for r in answers:
        if r.status_code == 409:
            assert "reload" in r.json()["detail"], r.text  # moved on (version) or changed meanwhile
    with sessions() as s:
        rounds = s.execute(select(func.max(WorkOrder.round))).scalar_one()
        cancelled = s.execute(select(func.count()).where(WorkOrder.status == WorkOrderStatus.CANCELLED)).scalar_one()
    assert (rounds, cancelled) == (2, 1)
    # The same request again, later: the case moved on, so it is refused too.
    again = httpx.post(url, json=body, headers=bo)
    assert again.status_code == 409, again.text


def test_r7_3_redispatch_without_expected_version_is_422_naming_it(server):
    case = _dispatched_case(server)
    r = httpx.post(f"{server}/api/v1/cases/{case['number']}/dispatch", json={"units": ["urban_management"]},
                   headers=_token(server, "bo1"))
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "expected_version" and "expected_version" in r.json()["detail"]


def _version(base_url: str, number: str, headers: dict) -> int:
    r = httpx.get(f"{base_url}/api/v1/cases/{number}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["version"]


def _notified_order(base_url: str) -> tuple[dict, dict, str]:
    """A dispatched case whose work order was received and the citizen told: ready to report."""
    case = _dispatched_case(base_url)
    water = _token(base_url, "water1")
    base = f"{base_url}/api/v1/work-orders/{case['work_orders'][0]['id']}"
    assert httpx.post(f"{base}/receive", headers=water).status_code == 200
    r = httpx.post(f"{base}/notify", headers=water, json={"channel": "phone"})
    assert r.status_code == 200, r.text
    return case, water, base


def _events(sessions, number: str, action: str) -> int:
    with sessions() as s:
        return s.execute(select(func.count()).select_from(AuditEvent).join(Case, Case.id == AuditEvent.case_id)
                         .where(Case.number == number, AuditEvent.action == action)).scalar_one()


def _one_applied(answers: list[httpx.Response]) -> None:
    assert sorted(r.status_code for r in answers) == [200] + [409] * (N - 1), [(r.status_code, r.text) for r in answers]
    for r in answers:
        if r.status_code == 409:
            assert r.json()["error"] == "concurrent_update" and "reload" in r.json()["detail"], r.text


def test_r8_4_twenty_concurrent_reports_with_one_version_apply_once(server, sessions):
    """Issue 11 §7, R8.4: 20 reports naming the same case version: one applies, 19 are 409, one event."""
    case, water, base = _notified_order(server)
    body = {"answer": "已修复", "expected_version": _version(server, case["number"], water)}
    with httpx.Client(timeout=30) as client:
        answers = _together([lambda: client.post(f"{base}/report", headers=water, json=body) for _ in range(N)])
    _one_applied(answers)
    with sessions() as s:
        reported = s.execute(select(func.count()).select_from(WorkOrder)
                             .where(WorkOrder.status == WorkOrderStatus.REPORTED)).scalar_one()
    assert reported == 1 and _events(sessions, case["number"], "report") == 1
    again = httpx.post(f"{base}/report", headers=water, json=body)  # the same request later: the case moved on
    assert again.status_code == 409, again.text


def test_r7_5_twenty_concurrent_closes_with_one_version_apply_once(server, sessions):
    """Issue 11 §7, R7.5: 20 closes naming the same case version: one applies, 19 are 409, one event."""
    case, water, base = _notified_order(server)
    number = case["number"]
    r = httpx.post(f"{base}/report", headers=water,
                   json={"answer": "已修复", "expected_version": _version(server, number, water)})
    assert r.status_code == 200, r.text
    op = _token(server, "op1")
    r = httpx.post(f"{server}/api/v1/cases/{number}/callback", headers=op, json={"satisfaction": "satisfied"})
    assert r.status_code == 200 and r.json()["status"] == "awaiting_close", r.text
    body = {"note": "已办结", "expected_version": r.json()["version"]}
    url = f"{server}/api/v1/cases/{number}/close"
    with httpx.Client(timeout=30) as client:
        answers = _together([lambda: client.post(url, headers=op, json=body) for _ in range(N)])
    _one_applied(answers)
    assert _events(sessions, number, "close") == 1
    assert httpx.post(url, headers=op, json=body).status_code == 409  # the same request later


def test_r7_5_r8_4_close_and_report_without_expected_version_are_422_naming_it(server, sessions):
    """Issue 11 §7: close and report must name the version they acted on; nothing is applied without it."""
    case, water, base = _notified_order(server)
    for r in (httpx.post(f"{base}/report", headers=water, json={"answer": "已修复"}),
              httpx.post(f"{server}/api/v1/cases/{case['number']}/close", headers=_token(server, "op1"), json={})):
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "expected_version" and "expected_version" in r.json()["detail"], r.text
    assert _events(sessions, case["number"], "report") == 0


def test_r7_3_twenty_concurrent_first_dispatches_apply_once(server, sessions):
    """Issue 11 §7, R7.3: a first dispatch needs no version (nothing is under way yet), but of 20
    concurrent ones only one applies: the rest find the case moved on (409) or dispatched before
    and naming no version (422)."""
    op = _token(server, "op1")
    r = httpx.post(f"{server}/api/v1/cases", headers=op, json={k: v for k, v in CASE.items() if k != "dispatch"})
    assert r.status_code == 201, r.text
    number = r.json()["number"]
    r = httpx.post(f"{server}/api/v1/cases/{number}/escalate", headers=op, json={"note": "请后台派单"})
    assert r.status_code == 200, r.text
    bo = _token(server, "bo1")
    url = f"{server}/api/v1/cases/{number}/dispatch"
    with httpx.Client(timeout=30) as client:
        answers = _together([lambda: client.post(url, headers=bo, json={"units": ["water_supply"]}) for _ in range(N)])
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == 1 and set(statuses) <= {200, 409, 422}, [(r.status_code, r.text) for r in answers]
    with sessions() as s:
        orders = s.execute(select(func.count()).select_from(WorkOrder)).scalar_one()
    assert orders == 1
