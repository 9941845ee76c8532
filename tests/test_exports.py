"""Exports (issue 12 item 7): the monthly report (ticketing.figures.report) as XLSX and CSV, and
the lists as streamed CSV, on the hand-built April 2026 of tests/test_figures.py (its expected
figures are worked out there, by hand), on SQLite and PostgreSQL.

A1: an export is in the audit record; R5.3: a unit exports its own rows only, operators nothing;
R7.3c: a confidential case's content never reaches who may not read it, and the case counts in
the totals only."""
from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest
from openpyxl import load_workbook
from sqlalchemy import event, insert, select

from callcenter import exports
from tests.test_figures import APRIL, SH, _call, build_cases, t
from ticketing.access import CONFIDENTIAL_PLACEHOLDER
from ticketing.enums import CaseKind, CaseStatus, Channel
from ticketing.errors import InvalidInput
from ticketing.figures import CallFigures, CaseFigures, Period, Rate, WorkOrderFigures
from ticketing.figures.report import Report, View, monthly_report
from ticketing.models import AuditEvent, Case
from ticketing.store import session_scope

SECRET = "纪检机密甲"   # the R7.3c case's title: only the commission may read it
INJECTED = ["=HYPERLINK(\"http://x\")", "+1+2", "-3+4", "@SUM(A1)"]
VIEW_NAMES = ["calls", "calls_by_hour", "operators", "cases", "case_breakdown", "units", "callbacks"]
UNIT_VIEW_NAMES = ["cases", "case_breakdown", "units", "callbacks"]


def _calls(s, domain):
    """Three queued calls on 04-01: one answered in 10 s, one after 40 s, one abandoned."""
    from callcenter.auth import create_user
    from tests.conftest import PASSWORD

    op = create_user(s, username="op9", password=PASSWORD, role="front_desk", now=domain.clock()).id
    for uid, at, events in (
        ("e1", "04-01 09:00", [("queued", "04-01 09:00:05", {}, None),
                               ("operator_connected", "04-01 09:00:15", {"holdtime": 10, "operator": "1009"}, op),
                               ("operator_completed", "04-01 09:02:15", {"holdtime": 10, "talktime": 120}, None)]),
        ("e2", "04-01 10:00", [("queued", "04-01 10:00:05", {}, None),
                               ("operator_connected", "04-01 10:00:45", {"holdtime": 40, "operator": "1009"}, op)]),
        ("e3", "04-01 10:30", [("queued", "04-01 10:30:05", {}, None),
                               ("queue_abandoned", "04-01 10:30:08", {}, None)]),
    ):
        _call(s, uid, at, events=events)


@pytest.fixture
def april_api(api, seeded, domain):
    """The April cases (and a few calls) in the store the API serves; the clock in May."""
    with session_scope(seeded) as s:
        ids = build_cases(s, domain)
        _calls(s, domain)
        s.get(Case, ids["c8"]).title = SECRET
        for case_id, text in zip((ids["c1"], ids["c2"], ids["c3"], ids["c4"]), INJECTED):
            s.get(Case, case_id).title = text
    domain.clock.set("2026-05-10T09:00:00")
    return api, ids


def _xlsx(response):
    assert response.status_code == 200, response.text
    return load_workbook(io.BytesIO(response.content))


def _table(sheet) -> tuple[list, list[list]]:
    """Header (row 2) and data rows (from row 3) of a report sheet."""
    rows = [list(r) for r in sheet.iter_rows(min_row=2, values_only=True)]
    return rows[0], rows[1:]


def _csv(response) -> list[dict]:
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def _exports(sessions, who: str) -> list[dict]:
    with sessions() as s:
        return [e.data for e in s.execute(select(AuditEvent).where(AuditEvent.action == "export",
                                                                   AuditEvent.actor_name == who)).scalars()]


# ---- the report's content ----------------------------------------------------------------------

def test_report_views_are_the_figure_functions_numbers_r7_3c_in_totals_only(april_api, seeded):
    """Each view reads the figure functions: the numbers test_figures.py worked out by hand."""
    with seeded() as s:
        report = monthly_report(s, APRIL)
        assert [v.name for v in report.views] == VIEW_NAMES
        calls = {row[0]: row for row in report.view("calls").rows}
        q = CallFigures(s).queue(APRIL)
        assert calls["进入人工队列 (offered)"][1] == q.offered == 3
        assert calls["接通率"][4] == q.answer_rate == Rate(2, 3)
        assert calls["15秒内接通率"][4] == Rate(1, 3)           # e1 (10 s); e2 waited 40 s
        cases = {row[0]: row for row in report.view("cases").rows}
        assert (cases["受理"][1], cases["其中纪检监察件 (R7.3c, 仅计总数)"][1]) == (8, 1)
        assert cases["满意率"][4] == CaseFigures(s).closing(APRIL).satisfaction == Rate(5, 6)
        breakdown = report.view("case_breakdown").rows
        assert not any(r[1] in ("discipline_economic", "discipline_commission") for r in breakdown)
        units = {row[0]: row for row in report.view("units").rows}
        # the totals row ("" code) counts WO8 (R7.3c); D had only R7.3c work: not listed
        assert set(units) == {"", "urban_management", "water_supply"}
        total = WorkOrderFigures(s).summary(APRIL)
        assert units[""][5] == total.response == Rate(4, 6) and units[""][8] == total.on_time == Rate(5, 7)
        assert units["water_supply"][3:6] == [4, 3, Rate(3, 4)]            # 响应率 3 / 4
        assert units["urban_management"][6:9] == [2, 0, Rate(0, 2)]        # 按时办结率 0 / 2
        assert units["water_supply"][9:12] == [4, 3, Rate(3, 4)]           # 满意率 3 / 4

        own = monthly_report(s, APRIL, "water_supply")
        assert [v.name for v in own.views] == UNIT_VIEW_NAMES               # no calls, no city totals
        assert [r[0] for r in own.view("units").rows] == ["water_supply"]
        assert not any("纪检" in r[0] for r in own.view("cases").rows)
        assert {r[1] for r in own.view("case_breakdown").rows if r[0] == "承办单位"} == {"water_supply"}


# ---- XLSX --------------------------------------------------------------------------------------

def test_xlsx_one_sheet_per_view_numbers_as_numbers_totals_equal_the_figures(april_api, seeded):
    api, _ = april_api
    r = api.get("/api/v1/exports/monthly.xlsx?month=2026-04", "bo1")
    assert r.headers["content-disposition"] == 'attachment; filename="12345-2026-04.xlsx"'
    book = _xlsx(r)
    assert book.sheetnames == [*VIEW_NAMES, "assessment"]  # the API's report carries the assessment too
    with seeded() as s:
        report = monthly_report(s, APRIL)
        intake = CaseFigures(s).intake(APRIL)
        total = WorkOrderFigures(s).summary(APRIL)
    for view in report.views:
        header, rows = _table(book[view.name])
        assert header == view.columns and len(rows) == len(view.rows)
    # every unit's figures in the sheet are the statistics API's, and its score the assessment API's
    header, rows = _table(book["units"])
    sheet = {r[0]: dict(zip(header, r)) for r in rows}
    for u in api.get("/api/v1/stats/units?month=2026-04", "bo1").json()["units"]:
        assert sheet[u["code"]]["响应率"] == pytest.approx(u["response"]["rate"]), u["code"]
        assert sheet[u["code"]]["按时办结率"] == pytest.approx(u["on_time"]["rate"]), u["code"]
    header, rows = _table(book["assessment"])
    scored = {r[0]: dict(zip(header, r)) for r in rows}
    assessed = api.get("/api/v1/assessment?month=2026-04", "bo1").json()["units"]
    assert scored and {u["code"]: (u["score"], u["rank"]) for u in assessed} == {
        code: (r["得分"], r["排名"]) for code, r in scored.items()}
    header, rows = _table(book["units"])
    totals = dict(zip(header, rows[0]))
    assert totals["应告知"] == total.response.denominator == 6 and isinstance(totals["应告知"], int)
    assert totals["响应率"] == pytest.approx(4 / 6) and book["units"]["F3"].number_format == "0.00%"
    assert totals["按时办结率"] == pytest.approx(5 / 7)
    cases = {row[0]: row for row in _table(book["cases"])[1]}
    assert cases["受理"][1] == intake.accepted == 8
    assert cases["其中纪检监察件 (R7.3c, 仅计总数)"][1] == intake.confidential == 1
    # the API's CSV of the same view carries the same figures
    units_csv = _csv(api.get("/api/v1/exports/monthly.csv?month=2026-04&view=units", "bo1"))
    assert units_csv[0]["响应率"] == "66.67%" and units_csv[0]["应报结"] == "7"


def test_a_units_clerk_exports_their_own_unit_only_operators_nothing(april_api, seeded):
    """R5.3: water1 gets water_supply's figures (asked for or not), never another unit's."""
    api, _ = april_api
    book = _xlsx(api.get("/api/v1/exports/monthly.xlsx?month=2026-04", "water1"))
    assert book.sheetnames == [*UNIT_VIEW_NAMES, "assessment"]
    header, rows = _table(book["assessment"])
    assert [(r[0], r[header.index("排名")]) for r in rows] == [("water_supply", None)]  # its own, unranked
    header, rows = _table(book["units"])
    assert [r[0] for r in rows] == ["water_supply"]
    assert dict(zip(header, rows[0]))["响应率"] == pytest.approx(3 / 4)
    assert api.get("/api/v1/exports/monthly.xlsx?month=2026-04&unit=urban_management", "water1").status_code == 403
    assert api.get("/api/v1/exports/monthly.csv?month=2026-04&view=calls", "water1").status_code == 422
    for path in ("monthly.xlsx?month=2026-04", "cases.csv", "work-orders.csv", "calls.csv?month=2026-04"):
        assert api.get(f"/api/v1/exports/{path}", "op1").status_code == 403
    assert api.get("/api/v1/exports/calls.csv?month=2026-04", "water1").status_code == 403

    mine = _csv(api.get("/api/v1/exports/work-orders.csv", "water1"))
    assert mine and {r["unit_code"] for r in mine} == {"water_supply"}
    listed = api.get("/api/v1/work-orders?limit=500", "water1").json()
    assert sorted(int(r["id"]) for r in mine) == sorted(w["id"] for w in listed)
    cases = _csv(api.get("/api/v1/exports/cases.csv", "water1"))
    assert [r["number"] for r in cases] == [c["number"] for c in api.get("/api/v1/cases?limit=500", "water1").json()]
    assert {r["units"] for r in cases} == {"water_supply"}  # its own work orders, as the API shows them


# ---- lists as CSV ------------------------------------------------------------------------------

def _local(iso: str | None) -> str:
    return "" if iso is None else datetime.fromisoformat(iso).astimezone(SH).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("query", ["", "?status=closed", "?kind=complaint"])
def test_the_case_csv_is_the_api_list(april_api, query):
    api, _ = april_api
    rows = _csv(api.get(f"/api/v1/exports/cases.csv{query}", "bo1"))
    listed = api.get(f"/api/v1/cases{query}{'&' if query else '?'}limit=500", "bo1").json()
    assert [r["number"] for r in rows] == [c["number"] for c in listed] and rows
    for row, case in zip(rows, listed):
        assert row["status"] == case["status"] and row["kind"] == case["kind"]
        assert row["accepted_at"] == _local(case["accepted_at"]) and row["closed_at"] == _local(case["closed_at"])
        assert exports.neutralise(case["title"]) == row["title"]
        assert row["units"] == ";".join(dict.fromkeys(w["unit_code"] for w in case["work_orders"]))
        assert "citizen_phone" not in row  # no citizen's number leaves in an export


def test_r7_3c_content_only_for_the_commission_and_the_export_audited(april_api, seeded):
    """R7.3c, A1."""
    api, _ = april_api
    for who in ("bo1", "sup1", "admin1"):
        r = api.get("/api/v1/exports/cases.csv?status=closed", who)
        assert SECRET not in r.content.decode("utf-8-sig") and CONFIDENTIAL_PLACEHOLDER in r.text
        assert SECRET not in api.get("/api/v1/exports/work-orders.csv", who).text
    own = api.get("/api/v1/exports/cases.csv", "disc1")
    assert SECRET in own.content.decode("utf-8-sig") and int(own.headers["x-export-rows"]) == 1
    assert SECRET not in api.get("/api/v1/exports/cases.csv", "water1").text

    # closed: C13 (February), C10, C1, C2, C3, C5, C8, C9 = 8 (C6, C7 are "rejected")
    assert {"what": "cases", "format": "csv", "filters": {"status": "closed"}, "rows": 8} in _exports(seeded, "bo1")
    assert {"what": "cases", "format": "csv", "filters": {}, "rows": 1} in _exports(seeded, "disc1")
    api.get("/api/v1/exports/monthly.xlsx?month=2026-04", "water1")
    (xlsx,) = [e for e in _exports(seeded, "water1") if e["format"] == "xlsx"]
    assert xlsx["what"] == "monthly_report" and xlsx["filters"] == {"month": "2026-04", "unit": "water_supply"}
    assert xlsx["rows"] > 0


def test_formula_injection_neutralised_in_csv_and_xlsx(april_api):
    api, _ = april_api
    titles = {r["title"] for r in _csv(api.get("/api/v1/exports/cases.csv", "bo1"))}
    assert {"'" + text for text in INJECTED} <= titles
    assert not any(title.startswith(("=", "+", "-", "@")) for title in titles)

    report = Report(APRIL, None, [View("v", "=1+1", ["=A1", "n"], [["@SUM(A1)", 3], ["-2", Rate(1, 2)],
                                                                   ["a\x1bb", 4]])])
    sheet = load_workbook(io.BytesIO(exports.report_xlsx(report, SH)))["v"]
    assert (sheet["A2"].value, sheet["A3"].value, sheet["A4"].value) == ("'=A1", "'@SUM(A1)", "'-2")
    assert sheet["A5"].value == "ab"  # a control character no worksheet can hold is dropped
    assert sheet["A3"].data_type == "s" and sheet["B3"].value == 3 and sheet["B4"].value == 0.5
    assert exports.view_csv(report.views[0], SH).splitlines()[1] == "'@SUM(A1),3"


def test_calls_csv_lists_the_queue_calls_behind_the_call_figures(april_api, seeded):
    api, _ = april_api
    rows = _csv(api.get("/api/v1/exports/calls.csv?month=2026-04", "sup1"))
    with seeded() as s:
        q = CallFigures(s).queue(APRIL)
    assert len(rows) == q.offered == 3
    assert [r["answered"] for r in rows] == ["true", "true", "false"] and rows[0]["wait_s"] == "10"
    sent = [e for e in _exports(seeded, "sup1") if e["what"] == "calls"]
    assert sent == [{"what": "calls", "format": "csv", "filters": {"month": "2026-04"}, "rows": None}]
    with seeded() as s:
        done = s.execute(select(AuditEvent.data).where(AuditEvent.action == "export",
                                                       AuditEvent.actor_name == "sup1")).scalars().all()
    assert {"what": "calls_sent", "format": "csv", "filters": {"month": "2026-04"}, "rows": 3} in done


# ---- a large list streams in batches ----------------------------------------------------------

def test_a_20k_case_csv_streams_in_keyset_batches(api, seeded, engine, domain):
    """20 000 cases: the count is announced first, then one query per 500 rows; the generator
    reads a batch only when the previous one is sent, and keeps no more than a batch."""
    n = 20_000
    accepted = t("04-10 10:00")
    with session_scope(seeded) as s:
        s.execute(insert(Case), [{"number": f"20260410-{i:06d}", "kind": CaseKind.CONSULTATION, "channel": Channel.WEB,
                                  "status": CaseStatus.NEW, "title": f"诉求{i}", "description": "内容",
                                  "accepted_at": accepted, "updated_at": accepted} for i in range(1, n + 1)])
    selects: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM cases" in statement and "LIMIT" in statement:
            selects.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        r = api.get("/api/v1/exports/cases.csv", "bo1")
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert r.headers["x-export-rows"] == str(n)
    body = r.content.decode("utf-8-sig").splitlines()
    assert len(body) == n + 1 and body[1].startswith(f"20260410-{n:06d},")   # newest first, as listed
    # 40 full batches of 500, then one query that finds no more; each from where the last ended
    assert len(selects) == n // exports.BATCH + 1
    assert "cases.id <=" in selects[0] and all("cases.id < " in q for q in selects[1:])

    # the generator itself: lazy, and a batch at a time in the session
    with seeded() as s:
        stmt = select(Case)
        count, top = exports.count_and_top(s, stmt, Case.id)
        assert count == n
        batches = exports.keyset_batches(s, stmt, Case.id, top=top)
        first = next(batches)
        assert len(first) == exports.BATCH and len(s.identity_map) == exports.BATCH
        sizes = [len(first)]
        for batch in batches:
            assert len(s.identity_map) == len(batch) <= exports.BATCH   # the previous batch was let go
            sizes.append(len(batch))
        assert sum(sizes) == n


def test_month_parameter(april_api):
    api, _ = april_api
    assert api.get("/api/v1/exports/monthly.xlsx?month=2026-13", "bo1").status_code == 422
    assert api.get("/api/v1/exports/monthly.xlsx?month=2026-06", "bo1").status_code == 422   # not begun
    assert api.get("/api/v1/exports/monthly.xlsx?month=April", "bo1").status_code == 422
    assert api.get("/api/v1/exports/monthly.xlsx?month=2026-04&unit=nowhere", "bo1").status_code == 404
    # default: this month so far (May, until the clock's now)
    book = _xlsx(api.get("/api/v1/exports/monthly.xlsx", "bo1"))
    assert "2026-05-01 00:00 至 2026-05-10 09:00" in book["cases"]["A1"].value


def test_period_of_a_month_not_over_ends_now():
    now = t("04-15 12:00")
    assert exports.period_of("2026-04", now, "Asia/Shanghai") == Period(APRIL.since, now)
    assert exports.period_of("2026-03", now, "Asia/Shanghai") == Period.month(2026, 3)
    assert exports.period_of(None, now, "Asia/Shanghai") == Period(APRIL.since, now)
    for month in ("9999-12", "2026-05", "1999-12", "2026-00"):
        with pytest.raises(InvalidInput):
            exports.period_of(month, now, "Asia/Shanghai")
    with pytest.raises(InvalidInput):  # the first moment of a month: nothing of it has passed
        exports.period_of("2026-04", APRIL.since, "Asia/Shanghai")
