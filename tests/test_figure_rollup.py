"""The daily rollup of the case and work-order rates (ticketing.figures.rollup, issue 12 item 3)
gives exactly the raw query's numbers, on SQLite and PostgreSQL: for whole months, a fortnight,
a period ending mid-day (the month so far), every unit and the city; after the workflow's kind of
changes (the triggers mark the days, read raw until refreshed); after the refresh; and after
`callcenter stats rebuild`."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from callcenter.cli import main
from tests.test_figures import SH
from ticketing.enums import RequestState, Satisfaction, WorkOrderStatus
from ticketing.figure_days_model import FigureDay, StaleDay
from ticketing.figures import CaseFigures, Period, WorkOrderFigures
from ticketing.figures.rollup import ROLLED_UP, refresh_stale, rollup_readers
from ticketing.models import Case, ExtensionRequest, WorkOrder
from ticketing.seed import seed_units
from ticketing.store import session_scope

PERIODS = {
    "march": Period.month(2026, 3),
    "april": Period.month(2026, 4),
    "a fortnight": Period(datetime(2026, 3, 20, tzinfo=SH), datetime(2026, 4, 3, tzinfo=SH)),
    "april so far (mid-day)": Period(datetime(2026, 4, 1, tzinfo=SH), datetime(2026, 4, 17, 15, 30, tzinfo=SH)),
    "from mid-day": Period(datetime(2026, 3, 5, 9, 15, tzinfo=SH), datetime(2026, 3, 9, tzinfo=SH)),
}


@pytest.fixture
def city(sessions, domain):
    """A few hundred generated cases over two months (every status, unit, return, extension, urge,
    confidential ones), written with the triggers in place."""
    from benchmarks.figures_city import Shape, build_city
    with session_scope(sessions) as s:
        seed_units(s, domain.city, domain.clock())
        engine = s.get_bind()
    build_city(engine, Shape(cases=600, calls=300, start=datetime(2026, 3, 1, tzinfo=SH), days=61, seed=11))
    return sessions


def assert_rollup_equals_raw(s) -> int:
    """Every rolled-up rate, period, unit: what the figures read equals the raw computation.
    Returns how many non-empty rates were compared."""
    compared = 0
    for rolled, raw in ((CaseFigures(s), CaseFigures(s, use_rollup=False)),
                        (WorkOrderFigures(s), WorkOrderFigures(s, use_rollup=False))):
        for name in ROLLED_UP & set(rolled.definitions):
            for label, period in PERIODS.items():
                assert rolled.rate(name, period) == raw.rate(name, period), (name, label)
                by_unit = rolled.rate_by_unit(name, period)
                assert by_unit == raw.rate_by_unit(name, period), (name, label)
                counted = [(code, r) for code, r in by_unit.items() if r.denominator]
                compared += len(counted)
                for code, r in counted[:2]:  # one unit's rate, asked alone
                    assert rolled.rate(name, period, code) == r == raw.raw_rate(name, period, code), (name, code)
    return compared


def rollup_days(s) -> int:
    return s.execute(select(func.count(func.distinct(FigureDay.day)))).scalar()


def test_the_rollup_gives_the_raw_numbers_before_and_after_a_refresh(city):
    with city() as s:
        assert s.execute(select(func.count()).select_from(StaleDay)).scalar() > 0   # the load marked its days
        assert rollup_days(s) == 0
        assert assert_rollup_equals_raw(s) > 50                                      # all raw: nothing computed yet
    with session_scope(city) as s:
        assert refresh_stale(rollup_readers(s)) >= 61
    with city() as s:
        assert s.execute(select(func.count()).select_from(StaleDay)).scalar() == 0
        assert rollup_days(s) >= 61
        assert assert_rollup_equals_raw(s) > 50                                      # from the rollup


def test_changes_mark_their_days_and_read_raw_until_refreshed(city):
    """What the workflow does to rows a rate counts: a rating, a case turned R7.3c, a work order
    returned, an extension approved (its report deadline moved to another day), a case reopened."""
    with session_scope(city) as s:
        refresh_stale(rollup_readers(s))
    with session_scope(city) as s:
        closed = s.execute(select(Case).where(Case.closed_at.is_not(None)).order_by(Case.id).limit(3)).scalars().all()
        closed[0].satisfaction = Satisfaction.UNSATISFIED
        closed[1].confidential = True
        closed[2].closed_at = closed[2].closed_at + timedelta(days=9)
        order = s.execute(select(WorkOrder).where(WorkOrder.report_met.is_not(None)).order_by(WorkOrder.id)
                          .limit(1)).scalar_one()
        order.status = WorkOrderStatus.RETURNED
        order.report_due_at = order.report_due_at + timedelta(days=4)
        s.execute(update(ExtensionRequest).where(ExtensionRequest.id == select(func.min(ExtensionRequest.id))
                                                 .scalar_subquery()).values(state=RequestState.APPROVED))
    with city() as s:
        assert s.execute(select(func.count()).select_from(StaleDay)).scalar() > 0
        assert assert_rollup_equals_raw(s) > 50
    with session_scope(city) as s:
        assert refresh_stale(rollup_readers(s)) > 0
    with city() as s:
        assert s.execute(select(func.count()).select_from(StaleDay)).scalar() == 0
        assert assert_rollup_equals_raw(s) > 50


def test_a_rollup_row_is_what_the_reader_uses(city):
    """The rollup is really read (not the raw query): a row altered by hand shows in the figure,
    and a stale mark on its day sends the reader back to the raw rows."""
    with session_scope(city) as s:
        refresh_stale(rollup_readers(s))
    day = datetime(2026, 3, 10, tzinfo=SH).date()
    with session_scope(city) as s:
        before = CaseFigures(s).rate("satisfaction", PERIODS["march"])
        s.execute(update(FigureDay).where(FigureDay.day == day, FigureDay.figure == "satisfaction",
                                          FigureDay.unit_id == 0).values(total=FigureDay.total + 1000))
    with session_scope(city) as s:
        assert CaseFigures(s).rate("satisfaction", PERIODS["march"]).denominator == before.denominator + 1000
        s.add(StaleDay(day=day, marks=1))
    with city() as s:
        assert CaseFigures(s).rate("satisfaction", PERIODS["march"]) == before


def test_stats_rebuild_computes_the_rollup_from_the_raw_rows(city, db_url, monkeypatch):
    from callcenter.settings import get_settings
    with session_scope(city) as s:
        refresh_stale(rollup_readers(s))
        s.execute(update(FigureDay).values(total=FigureDay.total + 7))   # a definition "changed"
    monkeypatch.setenv("CALLCENTER_DATABASE_URL", db_url)
    get_settings.cache_clear()
    result = CliRunner().invoke(main, ["stats", "rebuild", "--since", "2026-02-28", "--until", "2026-05-02"],
                                catch_exceptions=True)
    assert result.exit_code == 0, result.output
    with city() as s:
        assert s.execute(select(func.count()).select_from(StaleDay)).scalar() == 0
        assert rollup_days(s) >= 61
        assert assert_rollup_equals_raw(s) > 50


def test_the_queue_figures_counted_compactly_equal_the_per_call_rows(city):
    """The month report's queue figures (counted without a QueueCall per call) equal `summarize`
    over `queue_calls`, the drill-down's rows: the whole period, per hour and per operator."""
    from ticketing.figures import CallFigures
    with city() as s:
        compared = 0
        for label, period in PERIODS.items():
            rows = CallFigures(s).queue_calls(period)
            compact = CallFigures(s)
            assert compact.queue(period) == CallFigures(s).queue(period, calls=rows), label
            assert compact.by_hour(period) == CallFigures(s).by_hour(period, calls=rows), label
            assert compact.by_operator(period) == CallFigures(s).by_operator(period, calls=rows), label
            compared += len(rows)
        assert compared > 100


def test_the_api_background_refresh_computes_the_stale_days(city, domain, engine):
    """callcenter/figures_refresh.py (run beside the API) takes the marks and computes their days."""
    from callcenter.figures_refresh import RollupRefresher
    refresher = RollupRefresher(domain, engine)
    assert refresher.refresh_once() >= 61
    with city() as s:
        assert s.execute(select(func.count()).select_from(StaleDay)).scalar() == 0
        assert rollup_days(s) >= 61
    assert refresher.refresh_once() == 0
