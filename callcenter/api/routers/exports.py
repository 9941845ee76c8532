"""Exports (issue 12 item 7): the monthly report as XLSX (one sheet per view) or one of its views
as CSV, and the case, work-order and queue-call lists as streamed CSV.

Progress: a list's CSV announces its row count before the first byte of the body, in the
`X-Export-Rows` header, and then streams in keyset batches; a page reads the body as it arrives
and shows rows received / rows announced. No job table, no file left on the server, nothing to
clean up, and any API worker can answer. (Queue calls are read a day at a time from the figure
function, which has no count of its own: their CSV announces none.)

Each export is an audit event (A1: who, what, filters, rows) committed before the body is sent;
the rows are those the same actor sees in the API (R5.3 unit isolation, R7.3c content masked by
the same view functions); operators may not export.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from callcenter import exports
from callcenter.api.deps import ActorDep, DomainDep, SessionDep, commit
from callcenter.api.routers.cases import CaseFilters
from callcenter.api.routers.cases import _out as case_view
from callcenter.api.routers.work_orders import WORK_ORDER_ROW, WorkOrderFilters
from callcenter.api.views import work_order_out
from ticketing.access import may_read_content
from ticketing.errors import InvalidInput
from ticketing.figures import CallFigures, Period, Thresholds
from ticketing.figures.report import monthly_report
from ticketing.models import Case, WorkOrder

router = APIRouter(prefix="/exports", tags=["exports"])

MonthQuery = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM; default: this month so far")]
UnitQuery = Annotated[str | None, Query(max_length=64, description="A member unit's code (a unit's own staff: theirs)")]
VIEWS = ("calls", "calls_by_hour", "operators", "cases", "case_breakdown", "units", "callbacks")
CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

CASE_COLUMNS = ["number", "accepted_at", "kind", "channel", "category_code", "status", "confidential", "title",
                "units", "owner", "answered_directly", "satisfaction", "dispatch_due_at", "deadline_at",
                "reported_at", "closed_at", "closed_provisionally", "overdue"]
WORK_ORDER_COLUMNS = ["id", "case_number", "unit_code", "mode", "role", "status", "round", "dispatched_at",
                      "notify_due_at", "notified_at", "notify_met", "report_due_at", "reported_at", "report_met",
                      "urge_count", "overdue", "instructions", "answer", "return_reason"]
CALL_COLUMNS = ["call_id", "queued_at", "answered", "wait_s", "talk_s", "abandoned", "operator"]


def _filename(stem: str, suffix: str) -> dict[str, str]:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)
    return {"Content-Disposition": f'attachment; filename="{safe}.{suffix}"'}


def _report(session, actor, domain, month, unit, what: str, fmt: str, view: str | None = None):
    scope = exports.report_scope(session, actor, unit)
    now = domain.clock()
    period = exports.period_of(month, now, domain.policy.timezone)
    names = {c.code: c.name for c in domain.city.categories}
    report = monthly_report(session, period, scope, Thresholds.for_policy(domain.policy), names=names,
                            assessment=domain.assessment)
    rows = sum(len(v.rows) for v in report.views if view is None or v.name == view)
    month = f"{period.since.astimezone(domain.calendar.tz):%Y-%m}"  # the month exported, asked for or not
    exports.record_export(session, actor, what, fmt=fmt, filters={"month": month, "unit": scope, "view": view},
                          rows=rows, at=now)
    commit(session)
    stem = f"12345-{month}" + (f"-{scope}" if scope else "")
    return report, stem


@router.get("/monthly.xlsx", response_class=Response,
            responses={200: {"content": {XLSX_TYPE: {}}, "description": "The report, one sheet per view"}},
            summary="The monthly report as XLSX: one sheet per view (a unit's staff: their unit's own figures)")
def monthly_xlsx(actor: ActorDep, session: SessionDep, domain: DomainDep, month: MonthQuery = None,
                 unit: UnitQuery = None) -> Response:
    report, stem = _report(session, actor, domain, month, unit, "monthly_report", "xlsx")
    return Response(exports.report_xlsx(report, domain.calendar.tz), media_type=XLSX_TYPE,
                    headers=_filename(stem, "xlsx"))


@router.get("/monthly.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "One view of the report"}},
            summary="One view (sheet) of the monthly report as CSV")
def monthly_csv(actor: ActorDep, session: SessionDep, domain: DomainDep, month: MonthQuery = None,
                unit: UnitQuery = None, view: Annotated[str, Query(pattern="^(" + "|".join(VIEWS) + ")$")] = "units",
                ) -> Response:
    report, stem = _report(session, actor, domain, month, unit, "monthly_report", "csv", view)
    chosen = next((v for v in report.views if v.name == view), None)
    if chosen is None:
        raise InvalidInput("view", f"the report has no view '{view}' for this scope (calls are the center's)")
    return Response(exports.view_csv(chosen, domain.calendar.tz), media_type=CSV_TYPE,
                    headers=_filename(f"{stem}-{view}", "csv"))


def _stream(request: Request, session, actor, domain, stmt, key, *, what: str, filters: dict, columns, row,
            options: tuple):
    """Count, record the export (A1), then stream the rows in batches from a session of its own."""
    rows, top = exports.count_and_top(session, stmt, key)
    exports.record_export(session, actor, what, fmt="csv", filters=filters, rows=rows, at=domain.clock())
    commit(session)
    body = exports.stream_csv(request.app.state.session_factory, stmt, key, top=top, columns=columns, row=row,
                              tz=domain.calendar.tz, options=options)
    headers = {**_filename(f"12345-{what}-{domain.clock():%Y%m%d%H%M}", "csv"), "X-Export-Rows": str(rows)}
    return StreamingResponse(body, media_type=CSV_TYPE, headers=headers)


@router.get("/cases.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "The list, X-Export-Rows announced first"}},
            summary="The case list (same filters as GET /cases) as streamed CSV; no citizen's name or number")
def cases_csv(request: Request, actor: ActorDep, session: SessionDep, domain: DomainDep,
              filters: Annotated[CaseFilters, Depends()]) -> StreamingResponse:
    exports.require_exporter(actor)
    stmt = filters.select(actor, select(Case), domain.clock())
    options = (selectinload(Case.owner), selectinload(Case.work_orders).options(
        selectinload(WorkOrder.unit), selectinload(WorkOrder.extensions), selectinload(WorkOrder.submissions)))

    def row(case: Case) -> list:
        out = case_view(case, actor, domain)  # as GET /cases shows it to this reader (a unit: its orders)
        units = ";".join(dict.fromkeys(wo.unit_code for wo in out.work_orders))
        return [units if c == "units" else getattr(out, c) for c in CASE_COLUMNS]

    return _stream(request, session, actor, domain, stmt, Case.id, what="cases", filters=filters.as_dict(),
                   columns=CASE_COLUMNS, row=row, options=options)


@router.get("/work-orders.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "The list, X-Export-Rows announced first"}},
            summary="The work-order list (same filters as GET /work-orders; a unit: its own) as streamed CSV")
def work_orders_csv(request: Request, actor: ActorDep, session: SessionDep, domain: DomainDep,
                    filters: Annotated[WorkOrderFilters, Depends()]) -> StreamingResponse:
    exports.require_exporter(actor)
    stmt = filters.select(actor, domain)

    def row(wo: WorkOrder) -> list:
        out = work_order_out(wo, domain.clock(), content=may_read_content(actor, wo.case))
        return [getattr(out, c) for c in WORK_ORDER_COLUMNS]

    return _stream(request, session, actor, domain, stmt, WorkOrder.id, what="work_orders",
                   filters=filters.as_dict(), columns=WORK_ORDER_COLUMNS, row=row, options=WORK_ORDER_ROW)


@router.get("/calls.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "Calls offered to the queue"}},
            summary="The calls offered to the operator queue in a month (the rows behind the call figures)")
def calls_csv(request: Request, actor: ActorDep, session: SessionDep, domain: DomainDep,
              month: MonthQuery = None) -> StreamingResponse:
    exports.require_exporter(actor, center_only=True)  # calls are the center's: no unit reads them
    period = exports.period_of(month, domain.clock(), domain.policy.timezone)
    month = f"{period.since.astimezone(domain.calendar.tz):%Y-%m}"
    # The figure function has no count of its own: the export is recorded when asked for (rows not
    # known yet) and again with the rows sent when the body is complete.
    exports.record_export(session, actor, "calls", fmt="csv", filters={"month": month}, rows=None, at=domain.clock())
    commit(session)
    thresholds = Thresholds.for_policy(domain.policy)
    tz = domain.calendar.tz

    def body() -> Iterator[bytes]:
        # a day at a time from the figure function: memory holds one day's calls
        s = request.app.state.session_factory()
        try:
            yield exports.csv_header(CALL_COLUMNS).encode()
            figures, day, sent = CallFigures(s, thresholds), period.since, 0
            while day < period.until:
                end = min(period.until, (day.astimezone(tz) + timedelta(days=1)).replace(
                    hour=0, minute=0, second=0, microsecond=0))
                calls = figures.queue_calls(Period(day, end))
                sent += len(calls)
                yield exports.csv_records(([c.call_id, c.queued_at, c.answered, c.wait_s, c.talk_s, c.abandoned,
                                            c.operator] for c in calls), tz).encode()
                day = end
            exports.record_export(s, actor, "calls_sent", fmt="csv", filters={"month": month}, rows=sent,
                                  at=domain.clock())
            s.commit()
        finally:
            s.rollback()
            s.close()

    stem = f"12345-calls-{period.since.astimezone(tz):%Y-%m}"
    return StreamingResponse(body(), media_type=CSV_TYPE, headers=_filename(stem, "csv"))
