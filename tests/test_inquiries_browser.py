"""The unit's 问责/说明 list (R6.1) in a real browser: an inquiry supervision opened shows on the
unit's page with its limit (overdue marked), the clerk explains from the page, and another unit's
page does not show it. Headless Chromium as in test_staff_pages_browser.py; screenshot in
/tmp/console-unit-inquiries.png."""
from __future__ import annotations

import pytest

from tests.test_staff_pages_browser import running, workflow

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def console(seeded, domain, engine, tmp_path):
    with running(domain, engine, tmp_path) as c:
        yield c


def test_r6_1_the_unit_sees_its_inquiry_task_and_explains_from_its_page(console, sessions, domain, clock):
    with workflow(sessions, domain) as (wf, a, _s):
        case = wf.accept(a("op1"), kind="consultation", channel="landline", title="水压低", description="三楼以上没水",
                         category_code="water_supply")
        (wo,) = wf.dispatch(a("op1"), case, units=["water_supply"])
        inquiry_id = wf.open_inquiry(a("sup1"), reason="overdue", description="请说明未按时告知的原因",
                                     work_order=wo, working_days=1).id
    clock.set("2026-03-04T09:00")  # the limit (Tue 03-03 17:30) has passed

    unit = console.login("water1", expect="/app/unit")
    row = unit.locator(f"#inquiries tr[data-inquiry='{inquiry_id}']")
    row.wait_for()
    assert "已超期" in row.locator(".explanation-due").inner_text() and "水压低" in row.inner_text()
    assert "待说明" in row.locator(".status").inner_text()
    form = unit.locator("#inquiries form.explain")
    form.locator("textarea[name=explanation]").fill("值班人员休假，已整改")
    form.get_by_role("button", name="提交说明").click()
    unit.locator(f"#inquiries tr[data-inquiry='{inquiry_id}'] .status", has_text="已说明").wait_for()
    assert "超期" in unit.locator(f"#inquiries tr[data-inquiry='{inquiry_id}'] .explanation-due").inner_text()
    unit.screenshot(path="/tmp/console-unit-inquiries.png", full_page=True)

    other = console.login("urban1", expect="/app/unit")
    other.locator("#inquiries .empty").wait_for(state="visible")
    assert other.locator("#inquiries tr[data-inquiry]").count() == 0
