"""Issue 11 §7, R7.3/R7.5, A1: a repeated or concurrent re-dispatch, close or report applies once.

A re-dispatch cancels the work orders under way, so it must name the case version it acted on
(``expected_version``): of 20 concurrent re-dispatches against a real server only the first
applies and the rest get 409 saying the case moved on. Close and report are one-way steps of the
case's and the work order's states, and every step bumps the case's version: a repeat is refused
by the state, a concurrent one by the version.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from ticketing.enums import WorkOrderStatus
from ticketing.models import WorkOrder

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


def test_r8_4_concurrent_reports_apply_once(server, sessions):
    case = _dispatched_case(server)
    water = _token(server, "water1")
    wo = case["work_orders"][0]["id"]
    base = f"{server}/api/v1/work-orders/{wo}"
    assert httpx.post(f"{base}/receive", headers=water).status_code == 200
    r = httpx.post(f"{base}/notify", headers=water, json={"channel": "phone"})
    assert r.status_code == 200, r.text
    with httpx.Client(timeout=30) as client:
        answers = _together([lambda: client.post(f"{base}/report", headers=water, json={"answer": "已修复"})
                             for _ in range(N)])
    assert sorted(r.status_code for r in answers) == [200] + [409] * (N - 1), [r.text for r in answers]
    with sessions() as s:
        reported = s.execute(select(func.count()).select_from(WorkOrder)
                             .where(WorkOrder.status == WorkOrderStatus.REPORTED)).scalar_one()
    assert reported == 1
