"""漏接回拨 on the desk page in a real browser: the operator sees the caller who gave up in the queue,
records a callback that did not get through (the row stays, counted), then one that did (it goes).
Headless Chromium as in test_staff_pages_browser.py."""
from __future__ import annotations

import pytest

from tests.test_missed_calls import _queued
from tests.test_staff_pages_browser import running
from ticketing.store import session_scope

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def console(seeded, domain, engine, tmp_path):
    with running(domain, engine, tmp_path) as c:
        yield c


def test_the_desk_calls_back_a_caller_who_gave_up_in_the_queue(console, sessions, clock):
    clock.set("2026-03-02T10:00:00")
    with session_scope(sessions) as s:
        _queued(s, "m1", "13800000001", "09:00:00", left="09:00:40")
    desk = console.login("op1", expect="/app/desk")
    row = desk.locator("#missed-calls tr[data-number='13800000001']")
    row.wait_for()
    assert "40 秒" in row.inner_text()
    row.locator("button.unreached").click()
    desk.locator("#missed-calls tr[data-number='13800000001'] td:nth-child(5)", has_text="1").wait_for()
    desk.locator("#missed-calls tr[data-number='13800000001'] button.reached").click()
    desk.locator("#missed-calls .empty").wait_for()
