"""Small helpers the API tests share: reading answers, refusals, local times, time travel, a real server."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

SH = ZoneInfo("Asia/Shanghai")

# Tests outside tests/live run at nice 19 beside the live calls (scripts/test), which can hold both cores
# of a small machine for tens of seconds: a page or a local server gets this long before it has failed.
PATIENCE_S = 120


def ok(r, status: int = 200):
    assert r.status_code == status, r.text
    return r.json()


def refused(r, status: int, rule: str) -> dict:
    """A refusal names the rule and tells the person why."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == rule, body
    assert body["detail"], body
    return body


def publish_knowledge(api, entry_id: int, writer: str) -> dict:
    """A knowledge entry submitted by its unit and published by the reviewer (the back office)."""
    ok(api.post(f"/api/v1/knowledge/{entry_id}/submit", writer))
    return ok(api.post(f"/api/v1/knowledge/{entry_id}/review", "bo1", json={"decision": "publish"}))


def close_case(api, number: str, as_: str = "op1", **body):
    """POST close naming the case version `as_` reads first, as a client does (issue 11 §7)."""
    version = ok(api.get(f"/api/v1/cases/{number}", as_))["version"]
    return api.post(f"/api/v1/cases/{number}/close", as_, json={**body, "expected_version": version})


def report_back(api, wo_id: int, as_: str, **body):
    """POST a work order's report naming the version of its case that `as_` reads first (issue 11 §7)."""
    number = ok(api.get(f"/api/v1/work-orders/{wo_id}", as_))["case_number"]
    version = ok(api.get(f"/api/v1/cases/{number}", as_))["version"]
    return api.post(f"/api/v1/work-orders/{wo_id}/report", as_, json={**body, "expected_version": version})


def local(iso: str) -> datetime:
    return datetime.fromisoformat(iso).replace(tzinfo=SH)


def when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def travel(api, clock, iso: str) -> None:
    """Move the clock; tokens live 12 h, so everyone logs in again."""
    clock.set(iso)
    api.tokens.clear()


@contextmanager
def serve(app) -> Iterator[str]:
    """The app on a real uvicorn server in a thread, on an ephemeral port."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def browser_context(browser, **options):
    """A Chromium context whose waits, navigations and expect() assertions last PATIENCE_S (see there)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=PATIENCE_S * 1000)
    context = browser.new_context(**options)
    context.set_default_timeout(PATIENCE_S * 1000)
    context.set_default_navigation_timeout(PATIENCE_S * 1000)
    return context


def actor_named(session, username: str):
    """The Actor of a seeded user, as the API would build it from their token."""
    from sqlalchemy import select

    from callcenter.auth import actor_of
    from ticketing.models import User

    return actor_of(session.execute(select(User).where(User.username == username)).scalar_one())


def chain_verified(sessions) -> int:
    """A1: the audit chain verifies; returns how many events were checked."""
    from ticketing import audit
    from ticketing.store import session_scope

    with session_scope(sessions) as s:
        report = audit.verify(s)
    assert report.ok, report.problems
    return report.checked


def with_office_hours(domain, hours: str = "08:00-20:00"):
    """The domain of a city whose operators keep office hours (the shipped config answers 7x24,
    GB/T 33358-2016): the voice menu's after-hours branch is reachable at night."""
    import dataclasses

    from ticketing.policy import policy_from_mapping

    ivr = policy_from_mapping({"ivr": {"service_hours": {"default": [hours]}}}).ivr
    ivr = dataclasses.replace(ivr, mode=domain.policy.ivr.mode)
    return dataclasses.replace(domain, policy=dataclasses.replace(domain.policy, ivr=ivr))
