"""The "导出" panels in a real browser (issue 12 item 7): the back office downloads the monthly
XLSX and a list's CSV with its progress shown; a unit clerk downloads their own unit's report.
Headless Chromium through Playwright (tests/test_staff_pages_browser.py's server and browser)."""
from __future__ import annotations

import csv
import io

import pytest
from openpyxl import load_workbook

from tests.test_figures import build_cases
from tests.test_staff_pages_browser import running
from ticketing.store import session_scope

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def console(seeded, domain, engine, tmp_path):
    with session_scope(seeded) as s:
        build_cases(s, domain)
    domain.clock.set("2026-05-10T09:00:00")
    with running(domain, engine, tmp_path) as c:
        yield c


def _download(page, button: str):
    page.fill("#exports input[name=month]", "2026-04")
    with page.expect_download() as info:
        page.click(f"#exports button:has-text('{button}')")
    return info.value


def test_back_office_downloads_the_monthly_xlsx_and_a_list_csv_with_progress(console):
    page = console.login("bo1", expect="/app/back")
    page.locator("#exports select[name=unit] option[value=water_supply]").wait_for(state="attached")
    xlsx = _download(page, "月报 (XLSX)")
    assert xlsx.suggested_filename == "12345-2026-04.xlsx"
    book = load_workbook(io.BytesIO(xlsx.path().read_bytes()))
    assert book.sheetnames == ["calls", "calls_by_hour", "operators", "cases", "case_breakdown", "units", "callbacks",
                               "assessment"]

    listed = console.api("GET", "/cases?limit=500", "bo1").json()
    csv_file = _download(page, "诉求件清单 (CSV)")
    rows = list(csv.DictReader(io.StringIO(csv_file.path().read_text(encoding="utf-8-sig"))))
    assert [r["number"] for r in rows] == [c["number"] for c in listed]
    page.locator("#exports .progress", has_text=f"（{len(listed)} 行）").wait_for()
    page.screenshot(path="/tmp/console-exports.png", full_page=True)


def test_a_unit_clerk_downloads_their_own_units_report(console):
    page = console.login("water1", expect="/app/unit")
    assert page.locator("#exports select[name=unit]").count() == 0
    book = load_workbook(io.BytesIO(_download(page, "月报 (XLSX)").path().read_bytes()))
    assert book.sheetnames == ["cases", "case_breakdown", "units", "callbacks", "assessment"]
    assert [r[0].value for r in book["units"].iter_rows(min_row=3)] == ["water_supply"]
