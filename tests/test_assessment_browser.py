"""The unit's page shows its own assessment (考核, R5.2) for the current month in a real browser:
its figures and band, no rank and no other unit. Headless Chromium as in
test_staff_pages_browser.py; screenshot in /tmp/console-unit-assessment.png."""
from __future__ import annotations

import pytest

from tests.test_staff_pages_browser import running, workflow

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def console(seeded, domain, engine, tmp_path):
    with running(domain, engine, tmp_path) as c:
        yield c


def test_r5_2_the_unit_page_shows_its_own_figures_and_band_this_month(console, sessions, domain, clock):
    with workflow(sessions, domain) as (wf, a, _s):
        case = wf.accept(a("op1"), kind="consultation", channel="landline", title="水压低", description="三楼以上没水",
                         category_code="water_supply")
        (wo,) = wf.dispatch(a("op1"), case, units=["water_supply"])
        wf.notify(a("water1"), wo, channel="phone")
        wf.report(a("water1"), wo, answer="已恢复供水")
    # Tue 03-10: notification (due 03-04) and report (due 03-09) both in time; nothing rated yet, so
    # 满意率 is not counted and the score is 100 of the figures counted -> band A (好).
    clock.set("2026-03-10T09:00")

    unit = console.login("water1", expect="/app/unit")
    box = unit.locator("#assessment")
    box.locator("tr[data-figure='response']").wait_for()
    assert "得分 100.00，等次 A（好）" in box.locator(".summary").inner_text()
    assert "排名" not in box.inner_text() and "urban" not in box.inner_text()
    response = box.locator("tr[data-figure='response']").inner_text()
    assert "响应率" in response and "1/1" in response and "100.0%" in response
    assert "不计" in box.locator("tr[data-figure='satisfaction']").inner_text()
    unit.screenshot(path="/tmp/console-unit-assessment.png", full_page=True)

    other = console.login("urban1", expect="/app/unit")
    other.locator("#assessment tr[data-figure='on_time']").wait_for()
    assert "本月暂无应计指标" in other.locator("#assessment .summary").inner_text()
