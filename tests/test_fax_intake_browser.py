"""A fax case completed on the desk page in a real browser (issue 14 item 3; R7.1, R2.2): the case
arrives with only its PDF; the operator takes it from the waiting list, fills in kind, category,
request, name and phone on the case's form, and it is then dispatched like any case. Headless
Chromium as in test_staff_pages_browser.py."""
from __future__ import annotations

import pytest

from tests.test_fax_intake import PDF
from tests.test_staff_pages_browser import running
from ticketing.fax import accept_fax
from ticketing.store import session_scope

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def console(seeded, domain, engine, tmp_path):
    with running(domain, engine, tmp_path) as c:
        yield c


def test_r7_1_the_desk_completes_a_fax_case_then_dispatches_it(console, sessions, domain):
    with session_scope(sessions) as s:
        number = accept_fax(s, domain.workflow(s), caller="051087000001", pdf=PDF, pages=1, complete=True,
                            call_id=None, now=domain.clock()).number
    desk = console.login("op1", expect="/app/desk")
    desk.locator(f"#waiting-cases tr[data-number='{number}'] button.take").click()
    form = desk.locator("#case-detail form.intake")
    form.wait_for()
    form.locator("select[name=kind]").select_option("complaint")
    form.locator("select[name=category_code]").select_option("water_supply")
    form.locator("input[name=title]").fill("人民路停水")
    form.locator("textarea[name=description]").fill("人民路88号停水两天，传真所述")
    form.locator("input[name=citizen_name]").fill("李四")
    form.locator("input[name=citizen_phone]").fill("13800000002")
    form.get_by_role("button", name="保存").click()
    desk.locator("#case-detail .flash", has_text="已保存来件信息").wait_for()
    case = console.api("GET", f"/cases/{number}", "op1").json()
    assert (case["kind"], case["category_code"], case["citizen_name"], case["citizen_phone"]) == (
        "complaint", "water_supply", "李四", "13800000002")
    # then it flows as any case: the dispatch form routes it by its category
    dispatch = desk.locator("#case-detail form.action", has_text="交办")
    dispatch.locator("select[name=unit]").select_option("")
    dispatch.get_by_role("button", name="提交").click()
    desk.locator("#case-detail .flash", has_text="已交办").wait_for()
    assert console.api("GET", f"/cases/{number}", "op1").json()["status"] == "dispatched"
    assert not console.errors, console.errors
