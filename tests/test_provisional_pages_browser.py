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


def test_t1_admin_enters_the_arrangement_on_the_page_and_the_marks_go(seeded, sessions, clock, engine, tmp_path):
    import shutil

    from tests.conftest import CONFIG_DIR
    from tests.test_staff_pages_browser import running
    from ticketing.domain import Domain

    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)  # entering an arrangement writes the override file
    clock.set("2026-12-18T10:00")
    domain = Domain.load(config, clock=clock)
    with workflow(sessions, domain) as (wf, a, _s):
        c = wf.accept(a("op1"), kind="complaint", channel="landline", title="年底的投诉", description="甲",
                      category_code="water_supply")
        (wo,) = wf.dispatch(a("op1"), c, units=["water_supply"])
    with running(domain, engine, tmp_path) as console:  # noqa: F811
        admin = console.login("admin1", expect="/app/back")
        panel = admin.locator("#calendar")
        panel.wait_for()
        assert "2027年：暂定" in panel.locator(".years").inner_text()
        form = panel.locator("form")
        assert form.locator("input[name=year]").input_value() == "2027"
        form.locator("textarea[name=holidays]").fill("2027-01-01\n2027-02-05..2027-02-13")
        form.locator("textarea[name=workdays]").fill("2027-01-04")  # a Monday: refused, nothing written
        form.get_by_role("button", name="录入").click()
        form.locator(".error", has_text="weekday").wait_for()
        form.locator("textarea[name=workdays]").fill("2027-01-02 2027-02-20")
        form.get_by_role("button", name="录入").click()
        form.locator(".done", has_text="更正暂定期限").wait_for()
        assert "2027年：已录入" in panel.locator(".years").inner_text()
        assert admin.locator(".calendar-warning").count() == 0
        admin.screenshot(path="/tmp/console-calendar-admin.png", full_page=True)

        unit = console.login("water1", expect="/app/unit")
        row = unit.locator(f"#inbox tr[data-wo='{wo.id}']")
        row.wait_for()
        assert "暂定" not in row.inner_text()  # counted again on the entered arrangement
