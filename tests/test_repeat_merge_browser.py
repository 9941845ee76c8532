"""重复诉求并单 in a real browser (issue 13 item 7): the desk sees a repeat flagged on the case it
opens; the back office merges it from its dispatch list. Headless Chromium as in
test_staff_pages_browser.py."""
from __future__ import annotations

import pytest

from tests.test_staff_pages_browser import running, workflow

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def console(seeded, domain, engine, tmp_path):
    with running(domain, engine, tmp_path) as c:
        yield c


def test_desk_flags_a_repeat_and_the_back_office_merges_it(console, sessions, domain):
    with workflow(sessions, domain) as (wf, a, _s):
        common = {"kind": "complaint", "channel": "landline", "description": "人民路一带停水", "citizen_phone": "13800000001",
                  "location": "人民路88号", "category_code": "water_supply"}
        first = wf.accept(a("op1"), title="停水三天", **common)
        wf.dispatch(a("op1"), first, units=["water_supply"])
        again = wf.accept(a("op1"), title="又停水了", **common)
        first_no, again_no = first.number, again.number

    desk = console.login("op1", expect="/app/desk")
    desk.locator(f"#my-cases tr[data-number='{again_no}'] button").click()
    flag = desk.locator("#case-detail .repeat-flag")
    flag.wait_for()
    assert first_no in flag.inner_text() and "同一来电号码" in flag.inner_text()
    form = desk.locator("#case-detail form.action", has_text="转后台派单")
    form.get_by_role("button", name="提交").click()
    desk.locator("#case-detail .flash", has_text="已转后台").wait_for()

    back = console.login("bo1", expect="/app/back")
    merge = back.locator("#pending-dispatch form.merge")
    merge.wait_for()
    assert merge.locator("select[name=into]").input_value() == first_no
    merge.get_by_role("button", name="并单").click()
    # merged, it leaves the dispatch list
    back.locator(f"#pending-dispatch .item[data-key='{again_no}']").wait_for(state="detached")
    r = console.api("GET", f"/cases/{again_no}/merges", "bo1")
    assert r.json()["merged_into"] == first_no
    assert console.api("GET", f"/cases/{again_no}", "bo1").json()["status"] == "closed"
