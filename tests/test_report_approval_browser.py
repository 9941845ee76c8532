"""The leader's 待审批 list on the unit page (Article 5 (二) 6), in headless Chromium: a clerk of
教育局 (a unit with approval) reports, the leader sends it back with a note, the clerk sees the
note with the text kept, edits and resubmits, the leader approves and the report reaches the center.
Screenshot: /tmp/console-approvals.png."""
from __future__ import annotations

import pytest

from callcenter.auth import create_user
from ticketing.store import session_scope

from .conftest import PASSWORD
from .test_staff_pages_browser import running

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def console(seeded, domain, engine, tmp_path):
    with session_scope(seeded) as s:
        for username, leader in (("edu1", False), ("edu_lead", True)):
            create_user(s, username=username, password=PASSWORD, role="unit_staff", unit_code="education",
                        unit_leader=leader, now=domain.clock())
    with running(domain, engine, tmp_path) as c:
        yield c


def test_r5_3_leader_sends_back_then_approves_a_report_on_the_unit_page(console):
    number = console.api("POST", "/cases", "op1", json={"kind": "consultation", "channel": "mobile",
                                                        "title": "秋季入学材料", "description": "入学要带什么材料？"}).json()["number"]
    (wo,) = console.api("POST", f"/cases/{number}/dispatch", "op1", json={"units": ["education"]}).json()["work_orders"]
    console.api("POST", f"/work-orders/{wo['id']}/receive", "edu1").raise_for_status()
    console.api("POST", f"/work-orders/{wo['id']}/notify", "edu1", json={"channel": "phone"}).raise_for_status()

    clerk = console.login("edu1", expect="/app/unit")
    assert clerk.locator("#approvals").is_hidden()  # not a leader: no approval list
    clerk.locator(f"#inbox tr[data-number='{number}'] button", has_text="办理").click()
    detail = clerk.locator("#order-detail")
    detail.locator("form.report textarea[name=answer]").fill("请到学校问")
    detail.locator("form.report button").click()
    detail.locator(".approval-pending").wait_for()
    assert detail.locator("form.report").count() == 0  # nothing to file twice while it waits
    clerk.locator(f"#inbox tr[data-number='{number}'] .status", has_text="待审批").wait_for()

    leader = console.login("edu_lead", expect="/app/unit")
    row = leader.locator(f"#approvals tr[data-wo='{wo['id']}']")
    row.wait_for()
    assert number in row.inner_text() and "请到学校问" in row.inner_text() and "edu1" in row.inner_text()
    row.locator("input[name=note]").fill("请写明所需材料")
    row.locator("button", has_text="退回修改").click()
    leader.locator("#approvals .empty").wait_for(state="visible")

    clerk.reload()
    clerk.locator(f"#inbox tr[data-number='{number}'] button", has_text="办理").click()
    detail.locator(".approval-note", has_text="请写明所需材料").wait_for()
    answer = detail.locator("form.report textarea[name=answer]")
    assert answer.input_value() == "请到学校问"  # kept for editing
    answer.fill("请携带户口本、房产证到学校报名")
    detail.locator("form.report button").click()
    detail.locator(".approval-pending").wait_for()

    leader.locator("#approvals .refresh").click()
    row.wait_for()
    assert "请携带户口本、房产证到学校报名" in row.inner_text()
    leader.screenshot(path="/tmp/console-approvals.png", full_page=True)
    row.locator("button", has_text="批准报结").click()
    leader.locator("#approvals .empty").wait_for(state="visible")
    leader.locator(f"#done tr[data-number='{number}']").wait_for()

    after = console.api("GET", f"/work-orders/{wo['id']}", "op1").json()
    assert after["status"] == "reported" and after["answer"] == "请携带户口本、房产证到学校报名"
