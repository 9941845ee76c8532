"""`callcenter stats report` (issue 12 item 8) on the hand-built April 2026 of tests/test_figures.py,
on SQLite and PostgreSQL: the monthly report as aligned text or XLSX, a unit's own figures only,
R7.3c in the totals only, and an audited export (A1)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import select

from callcenter.cli import main
from callcenter.settings import get_settings
from tests.conftest import CONFIG_DIR
from tests.test_figures import april, units  # noqa: F401 - the fixtures
from ticketing.models import AuditEvent

VIEWS = ["calls", "calls_by_hour", "operators", "cases", "case_breakdown", "units", "callbacks"]


@pytest.fixture
def run(april, db_url, tmp_path):  # noqa: F811
    env = {"CALLCENTER_STATE_DIR": str(tmp_path), "CALLCENTER_CONFIG_DIR": str(CONFIG_DIR),
           "CALLCENTER_DATABASE_URL": db_url}

    def invoke(*args: str, code: int = 0) -> str:
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(main, ["stats", "report", *args], env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()
        assert result.exit_code == code, result.output
        return result.output

    return invoke


def _line(out: str, first: str, view: str | None = None) -> list[str]:
    """The line starting with `first` (in the table of `view`, when given)."""
    if view is not None:
        out = out.split(f"({view}) ==\n", 1)[1].split("\n\n", 1)[0]
    (line,) = [ln for ln in out.splitlines() if ln.split() and ln.split()[0] == first]
    return line.split()


def test_prints_every_view_as_aligned_tables(run):
    out = run("--month", "2026-04")
    assert "12345热线月报 全市 2026-04-01 00:00 至 2026-05-01 00:00" in out
    for view in VIEWS:
        assert f"({view}) ==" in out
    # water_supply: dispatched 4; 告知 4 due, 3 met -> 75.00%; 报结 4 / 4 -> 100.00%; 满意 3 / 4
    assert _line(out, "water_supply", "units")[2:12] == ["4", "4", "3", "75.00%", "4", "4", "100.00%", "4", "3", "75.00%"]
    # R7.3c: counted in the totals (受理 8, of which 1 confidential), in no breakdown or unit row
    assert _line(out, "受理")[1] == "8" and _line(out, "其中纪检监察件")[-1] == "1"
    assert "discipline_economic" not in out and "discipline_commission" not in out
    # columns line up: every line of the units table is as wide as its dashes (display width)
    lines = out.split("(units) ==\n", 1)[1].split("\n\n", 1)[0].splitlines()
    from callcenter.exports import _width
    assert all(_width(ln) == _width(lines[1]) for ln in lines[2:]) and _width(lines[0]) == _width(lines[1])


def test_a_units_report_has_its_own_figures_only(run):
    out = run("--month", "2026-04", "--unit", "water_supply")
    assert "(calls) ==" not in out and "(operators) ==" not in out
    assert "urban_management" not in out and "合计" not in out and "其中纪检监察件" not in out
    assert _line(out, "water_supply", "units")[5] == "75.00%"
    assert "(assessment) ==" in out  # its own score and band, unranked
    run("--month", "2026-04", "--unit", "nowhere", code=2)
    run("--month", "2026-13", code=2)
    run("--month", "2099-01", code=2)  # not begun


def test_writes_the_xlsx_and_records_the_export(run, tmp_path, april):  # noqa: F811
    path = tmp_path / "april.xlsx"
    out = run("--month", "2026-04", "--xlsx", str(path))
    assert out.startswith(f"{path}: 8 sheets")
    book = load_workbook(path)
    assert book.sheetnames == [*VIEWS, "assessment"]
    header = [c.value for c in book["units"][2]]
    totals = dict(zip(header, [c.value for c in book["units"][3]]))
    assert (totals["应告知"], totals["按时告知"]) == (6, 4) and totals["响应率"] == pytest.approx(4 / 6)
    sessions, _ = april
    with sessions() as s:
        (event,) = s.execute(select(AuditEvent).where(AuditEvent.action == "export")).scalars()
    assert event.actor_name.startswith("cli:") and event.data["what"] == "monthly_report"
    assert event.data["format"] == "xlsx" and event.data["filters"] == {"month": "2026-04"}
    assert event.data["rows"] > 0
