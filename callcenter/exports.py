"""Exports (issue 12 item 7): the monthly report as XLSX, CSV or aligned text, and any list as a
streamed CSV, read in keyset batches so memory stays flat however long the list is.

Every string cell goes through `neutralise` (CSV and XLSX alike): a spreadsheet must never take a
citizen's text for a formula. Who may export what, and the audit event, are here too, so the API
and the CLI decide and record alike (A1, R5.3, R7.3c).
"""
from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ticketing import audit
from ticketing.access import figures_unit, figures_unit_code, require_center_figures
from ticketing.audit import Actor
from ticketing.figures.base import Period, Rate, asked_period
from ticketing.figures.report import Report, View

BATCH = 500  # rows per query of a streamed list
# OWASP "CSV injection": a cell starting with one of these is a formula to Excel / LibreOffice
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# ---- who may export, and the record of it ----------------------------------------------------

def report_scope(session: Session, actor: Actor, unit: str | None) -> str | None:
    """The unit whose report the actor gets: the figures' own rule (ticketing.access): the center
    chooses (None = the whole hotline); a unit's staff get their own unit's, never another's
    (R5.3); operators none."""
    return figures_unit_code(session, actor, unit)


def require_exporter(actor: Actor, *, center_only: bool = False) -> None:
    """Who may export lists: whoever reads figures (a unit its own rows); the calls: the center."""
    if center_only:
        require_center_figures(actor)
    else:
        figures_unit(actor, None)


def record_export(session: Session, actor: Actor, what: str, *, fmt: str, filters: dict[str, Any], rows: int,
                  at: datetime) -> None:
    """A1: who exported what, with which filters, how many rows (in the caller's transaction)."""
    audit.record(session, actor, "export", at=at,
                 data={"what": what, "format": fmt, "filters": {k: v for k, v in filters.items() if v is not None},
                       "rows": rows})


def period_of(month: str | None, now: datetime, tz: str) -> Period:
    """The month asked for (default: this one so far; ticketing.figures.base.asked_period)."""
    return asked_period(now, tz, month=month)


def neutralise(value: str) -> str:
    """A string a spreadsheet would run as a formula gets a leading apostrophe (shown as text)."""
    return "'" + value if value.startswith(FORMULA_START) else value


def text_cell(value: Any, tz: ZoneInfo) -> str:
    """A cell as CSV text: rates as percentages, times in the hotline's zone, enums by value."""
    if value is None:
        return ""
    if isinstance(value, Rate):
        return "" if value.rate is None else f"{value.rate * 100:.2f}%"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, datetime):
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
    return neutralise(str(getattr(value, "value", value)))


def csv_records(rows: Iterable[list[Any]], tz: ZoneInfo) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([text_cell(v, tz) for v in row] for row in rows)
    return buffer.getvalue()


def csv_header(columns: list[str]) -> str:
    """The header line, after a UTF-8 BOM (so Excel reads the Chinese right)."""
    return "\ufeff" + csv_records([columns], ZoneInfo("UTC"))


def view_csv(view: View, tz: ZoneInfo) -> str:
    return csv_header(view.columns) + csv_records(view.rows, tz)


# ---- the report as XLSX and as text ------------------------------------------------------------

def period_label(report: Report, tz: ZoneInfo) -> str:
    since = report.period.since.astimezone(tz)
    until = report.period.until.astimezone(tz)
    scope = f"单位 {report.unit}" if report.unit else "全市"
    return f"{scope} {since:%Y-%m-%d %H:%M} 至 {until:%Y-%m-%d %H:%M}"


def _sheet_text(value: str) -> str:
    """A string as a worksheet holds it: no control characters XML forbids, no formula."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return neutralise(ILLEGAL_CHARACTERS_RE.sub("", value))


def report_xlsx(report: Report, tz: ZoneInfo) -> bytes:
    """One sheet per view: its title and period in row 1, the header in row 2 (bold, filled,
    frozen), numbers as numbers, rates as percentages, seconds with one decimal."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook()
    book.remove(book.active)
    book.properties.title = _sheet_text(f"12345热线月报 {period_label(report, tz)}")
    header_font, header_fill = Font(bold=True), PatternFill("solid", start_color="DDE7F3")
    for view in report.views:
        sheet = book.create_sheet(view.name)
        sheet.cell(row=1, column=1, value=_sheet_text(f"{view.title}（{period_label(report, tz)}）")).font = Font(bold=True)
        for col, name in enumerate(view.columns, start=1):
            cell = sheet.cell(row=2, column=col, value=_sheet_text(name))
            cell.font, cell.fill, cell.alignment = header_font, header_fill, Alignment(horizontal="center")
        for r, row in enumerate(view.rows, start=3):
            for col, value in enumerate(row, start=1):
                _xlsx_cell(sheet.cell(row=r, column=col), value, tz)
        sheet.freeze_panes = "A3"
        for col, name in enumerate(view.columns, start=1):
            widest = max([_width(name), *(_width(text_cell(row[col - 1], tz)) for row in view.rows)])
            sheet.column_dimensions[get_column_letter(col)].width = min(60, widest + 2)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _xlsx_cell(cell, value: Any, tz: ZoneInfo) -> None:
    if isinstance(value, Rate):
        cell.value = value.rate
        cell.number_format = "0.00%"
    elif isinstance(value, bool) or value is None:
        cell.value = value
    elif isinstance(value, int):
        cell.value = value
        cell.number_format = "0"
    elif isinstance(value, float):
        cell.value = value
        cell.number_format = "0.0"
    elif isinstance(value, datetime):
        cell.value = value.astimezone(tz).replace(tzinfo=None)  # Excel has no zones: local time
        cell.number_format = "yyyy-mm-dd hh:mm:ss"
    else:
        cell.value = _sheet_text(str(getattr(value, "value", value)))
        cell.data_type = "s"  # openpyxl would take a leading "=" for a formula


def _width(text: str) -> int:
    """Display columns of a string: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def report_text(report: Report, tz: ZoneInfo) -> str:
    """The report as aligned plain-text tables (the CLI's output): numbers right, text left."""
    out = [f"12345热线月报 {period_label(report, tz)}"]
    for view in report.views:
        cells = [[text_cell(v, tz) for v in row] for row in view.rows]
        widths = [max([_width(c), *(_width(row[i]) for row in cells)]) for i, c in enumerate(view.columns)]
        numeric = [any(isinstance(row[i], (int, float, Rate)) for row in view.rows) for i in range(len(widths))]
        out += ["", f"== {view.title} ({view.name}) ==", _aligned(view.columns, widths, numeric),
                "  ".join("-" * w for w in widths)]
        out += [_aligned(row, widths, numeric) for row in cells] or ["（无）"]
    return "\n".join(out) + "\n"


def _aligned(values: list[str], widths: list[int], numeric: list[bool]) -> str:
    """Each value padded to its column's display width, on the right for numbers."""
    return "  ".join((v.rjust if right else v.ljust)(w - (_width(v) - len(v)))
                     for v, w, right in zip(values, widths, numeric)).rstrip()


# ---- streamed lists ----------------------------------------------------------------------------

def count_and_top(session: Session, stmt: Select, key) -> tuple[int, Any]:
    """How many rows the list has now and its highest key: the stream stops there, so rows added
    meanwhile do not run past the announced count."""
    sub = stmt.with_only_columns(key).order_by(None).subquery()
    return tuple(session.execute(select(func.count(), func.max(sub.c[0]))).one())  # type: ignore[return-value]


def keyset_batches(session: Session, stmt: Select, key, *, top: Any, batch: int = BATCH) -> Iterator[list]:
    """The list's rows in descending key order (as the API lists them), `batch` per query; each
    batch is dropped from the session before the next is read (memory flat)."""
    if top is None:
        return
    last = None
    while True:
        page = stmt.where(key <= top) if last is None else stmt.where(key < last)
        rows = list(session.execute(page.order_by(None).order_by(key.desc()).limit(batch)).scalars())
        if not rows:
            return
        yield rows
        last = getattr(rows[-1], key.key)
        session.expunge_all()
        if len(rows) < batch:
            return


def stream_csv(open_session: Callable[[], Session], stmt: Select, key, *, top: Any, columns: list[str],
               row: Callable[[Any], list[Any]], tz: ZoneInfo, options: tuple = (),
               batch: int | None = None) -> Iterator[bytes]:
    """A list as CSV bytes, one chunk per batch, in its own session (the request's is gone by the
    time the body is sent). `options`: the loader options that fetch what a row shows per batch."""
    session = open_session()
    try:
        yield csv_header(columns).encode()
        for rows in keyset_batches(session, stmt.options(*options), key, top=top, batch=batch or BATCH):
            yield csv_records((row(r) for r in rows), tz).encode()
    finally:
        session.rollback()
        session.close()
