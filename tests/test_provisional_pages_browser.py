"""T1/T3 in the browser: a deadline counted over a year whose holiday arrangement is not published
is shown as 暂定 where people act on it, and the back office sees the standing warning.
Headless Debian Chromium through Playwright (the staff console's harness)."""
from __future__ import annotations

import pytest

from tests.test_staff_pages_browser import console, workflow  # noqa: F401 - the fixture and helper

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_t1_t3_provisional_deadlines_say_zanding_and_back_office_is_warned(console, sessions, domain, clock):  # noqa: F811
    clock.set("2026-12-18T10:00")  # next year's arrangement not entered: 2027 is provisional
    with workflow(sessions, domain) as (wf, a, _s):
        c = wf.accept(a("op1"), kind="complaint", channel="landline", title="年底的投诉", description="甲",
                      category_code="water_supply")
        (wo,) = wf.dispatch(a("op1"), c, units=["water_supply"])

    unit = console.login("water1", expect="/app/unit")
    row = unit.locator(f"#inbox tr[data-wo='{wo.id}']")
    row.wait_for()
    assert "暂定" in row.locator(".report-due").inner_text()  # R8.3 limit in January 2027
    assert "暂定" not in row.locator(".notify-due").inner_text()  # R8.2 limit still in 2026
    unit.screenshot(path="/tmp/console-provisional-unit.png", full_page=True)

    desk = console.login("op1", expect="/app/desk")
    mine = desk.locator(f"tr[data-number='{c.number}']")
    mine.wait_for()
    assert mine.locator(".mark.provisional").count() >= 2  # the case's deadline and its callback date

    back = console.login("bo1", expect="/app/back")
    warning = back.locator(".calendar-warning")
    warning.wait_for()
    assert "2027" in warning.inner_text() and "暂定" in warning.inner_text()
    back.screenshot(path="/tmp/console-provisional-back.png", full_page=True)
