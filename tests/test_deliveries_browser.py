"""Notice deliveries on the back-office page in a real browser (issue 14; R8.2, R7.7): a citizen's
notice that failed is listed with its kind, case, masked number and last outcome; 只看失败的 narrows
the list; 重新发送 gives it a new round of tries. Headless Chromium as in test_staff_pages_browser.py."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from callback import notify as N
from tests.test_citizen_notices import CITIZEN, _notified
from tests.test_staff_pages_browser import running
from ticketing.notification_model import NotificationDelivery
from ticketing.store import session_scope

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def console(seeded, domain, engine, tmp_path):
    with running(domain, engine, tmp_path) as c:
        yield c


def test_r8_2_back_office_sees_a_failed_citizen_notice_masked_and_retries_it(console, sessions, domain, clock):
    number = _notified(sessions, domain, clock)
    with session_scope(sessions) as s:
        N.plan(s, domain)
        d = s.execute(select(NotificationDelivery)).scalar_one()
        d.state, d.tries, d.phone, d.detail = N.FAILED, 4, CITIZEN, "the citizen's line: not_answered 3"
        delivery_id = d.id
    back = console.login("bo1", expect="/app/back")
    box = back.locator("#notice-deliveries")
    row = box.locator(f"tr[data-delivery='{delivery_id}']")
    row.wait_for()
    text = row.inner_text()
    assert "告知诉求人" in text and number in text and "失败" in text and "not_answered" in text
    assert CITIZEN not in box.inner_text() and "138****0001" in text  # masked (ticketing/privacy.py)
    box.locator("input[name=failed]").check()
    box.locator(f"tr[data-delivery='{delivery_id}'][data-state='failed']").wait_for()
    row.locator("button.retry").click()
    # retried: no longer failed, so the failed-only list empties
    row.wait_for(state="detached")
    with session_scope(sessions) as s:
        assert s.get(NotificationDelivery, delivery_id).state == N.SCHEDULED
    assert not console.errors, console.errors


def test_r8_2_a_units_clerk_sees_their_own_units_deliveries_masked_and_no_other_units(console, sessions, domain, clock):
    """R5.3: the water company's clerk sees its R8.2 notice on the unit page, masked; the city
    management clerk's page lists nothing of it."""
    number = _notified(sessions, domain, clock)
    with session_scope(sessions) as s:
        N.plan(s, domain)
        d = s.execute(select(NotificationDelivery)).scalar_one()
        d.phone, delivery_id = CITIZEN, d.id  # the number a try dials
    unit = console.login("water1", expect="/app/unit")
    box = unit.locator("#notice-deliveries")
    row = box.locator(f"tr[data-delivery='{delivery_id}']")
    row.wait_for()
    assert number in row.inner_text() and "138****0001" in row.inner_text()
    assert CITIZEN not in box.inner_text()
    other = console.login("urban1", expect="/app/unit")
    other.locator("#notice-deliveries td.empty").wait_for()
    assert number not in other.locator("#notice-deliveries").inner_text()
    assert not console.errors, console.errors
