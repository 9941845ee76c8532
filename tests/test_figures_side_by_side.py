"""A report's independent reads side by side (ticketing/figures/concurrent.py, issue 12 item 3):
on PostgreSQL each on its own pooled connection, elsewhere one after the other; either way the
report is the one read one figure after another, over a generated city, on SQLite and PostgreSQL."""
from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.test_figures_by_unit import SH, unit_store  # noqa: F401 (fixture)
from ticketing.figures import Period
from ticketing.figures.concurrent import side_by_side
from ticketing.figures.report import monthly_report

MARCH = Period.month(2026, 3)


def _city(sessions):
    from benchmarks.figures_city import Shape, build_city
    with sessions() as s:
        engine = s.get_bind()
    build_city(engine, Shape(cases=600, calls=900, start=datetime(2026, 2, 1, tzinfo=SH), days=59, seed=11))
    return engine


def test_each_job_has_a_connection_of_its_own_on_postgresql_only(unit_store):  # noqa: F811
    """On PostgreSQL the three jobs run at once (each waits for the others at a barrier, which
    one-after-another would never pass) on three server processes; on SQLite on the caller's session."""
    sessions = unit_store
    with sessions() as s:
        if s.get_bind().dialect.name == "postgresql":
            barrier = threading.Barrier(3, timeout=30)

            def job(x):
                pid = x.execute(text("SELECT pg_backend_pid()")).scalar()
                barrier.wait()
                return x, pid
            got = side_by_side(s, {str(i): job for i in range(3)})
            assert len({pid for _x, pid in got.values()}) == 3 and all(x is not s for x, _ in got.values())
        else:
            got = side_by_side(s, {str(i): lambda x: x for i in range(3)})
            assert all(x is s for x in got.values())


def test_a_failing_job_raises_in_the_caller(unit_store):  # noqa: F811
    def fail(_session):
        raise ValueError("no such figure")
    with unit_store() as s:
        try:
            side_by_side(s, {"ok": lambda x: 1, "bad": fail})
        except ValueError as e:
            assert "no such figure" in str(e)
        else:
            raise AssertionError("the job's error was lost")


def test_the_reports_side_by_side_equal_one_read_after_another(unit_store):  # noqa: F811
    """The benchmark's month report (every figure) and the monthly report's views: the same with
    the reads side by side (an engine-bound session) as on one connection (one after the other)."""
    from benchmarks.figures_month import month_report
    engine = _city(unit_store)
    with unit_store() as s:
        together, views = month_report(s, MARCH), monthly_report(s, MARCH).views
    with engine.connect() as conn, Session(bind=conn) as s:
        alone, alone_views = month_report(s, MARCH), monthly_report(s, MARCH).views
    assert together == alone and views == alone_views
    assert together["intake"].accepted > 0 and together["queue"].offered > 0
    assert together["rates"]["repeat_caller"].denominator > 0 and together["rates"]["callback_reach"].denominator > 0
