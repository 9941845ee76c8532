"""`Figures.rate_by_unit` (issue 12 item 3, contracts.md item 1): every member unit's rate in one
grouped query is, for every definition, exactly what `rate(name, period, unit)` gives that unit
(R7.3c excluded the same way), on SQLite and PostgreSQL, over the hand-built April 2026 of
tests/test_figures.py and over a generated city (benchmarks/figures_month.py at a tiny size)."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from tests.test_figures import APRIL, SH, Builder, build_cases, t
from ticketing.figures import CaseFigures, Period, Thresholds, WorkOrderFigures
from ticketing.models import Case, MemberUnit, WorkOrder
from ticketing.seed import seed_units
from ticketing.store import session_scope

PERIODS = {
    "april": APRIL,
    "april so far": Period(APRIL.since, t("04-10 00:00")),     # what is not due yet is not missed
    "march to may": Period(datetime(2026, 3, 1, tzinfo=SH), datetime(2026, 6, 1, tzinfo=SH)),
    "nothing": Period(datetime(2025, 1, 1, tzinfo=SH), datetime(2025, 1, 2, tzinfo=SH)),
}


@pytest.fixture
def unit_store(sessions, domain):
    """Only the member units, as tests/test_figures.py seeds them."""
    with session_scope(sessions) as s:
        seed_units(s, domain.city, domain.clock())
    return sessions


@pytest.fixture
def april_store(unit_store, domain):
    """The hand-built April 2026 of tests/test_figures.py."""
    with session_scope(unit_store) as s:
        ids = build_cases(s, domain)
    return unit_store, ids


def readers(session):
    """Every definition once (the 70-day repeat window as a second threshold)."""
    return [(CaseFigures(session), None), (CaseFigures(session, Thresholds(repeat_within_days=70)), {"repeat_caller"}),
            (WorkOrderFigures(session), None)]


def assert_parity(session, periods) -> int:
    """Every definition, period and unit: the grouped rate equals the per-unit one. A unit that
    never had a work order is compared once (the rest must be 0 / 0 alike). Returns how many unit
    rates had something counted (so a test can tell it compared real numbers)."""
    codes = sorted(session.execute(select(MemberUnit.code)).scalars())
    worked = set(session.execute(select(MemberUnit.code).join(WorkOrder, WorkOrder.unit_id == MemberUnit.id)).scalars())
    compared = sorted(worked) + [c for c in codes if c not in worked][:1]
    counted = 0
    for reader, only in readers(session):
        for name in only or reader.definitions:
            for label, period in periods.items():
                grouped = reader.rate_by_unit(name, period)
                assert sorted(grouped) == codes, (name, label)
                for code in codes:
                    if code in compared:
                        assert grouped[code] == reader.rate(name, period, code), (name, label, code)
                    else:
                        assert grouped[code] == grouped[compared[-1]] and grouped[code].denominator == 0
                    counted += grouped[code].denominator > 0
    return counted


def test_rate_by_unit_equals_rate_per_unit_on_the_hand_built_april(april_store):
    """R7.3c: C8 (confidential, to discipline_commission) is in no unit's rate, grouped or not."""
    sessions, _ids = april_store
    with sessions() as s:
        assert assert_parity(s, PERIODS) > 0
        by_unit = CaseFigures(s).rate_by_unit("satisfaction", APRIL)
        # from tests/test_figures.py: W 3 / 4, U 2 / 2, D none (C8 is R7.3c), others none
        assert (by_unit["water_supply"].numerator, by_unit["water_supply"].denominator) == (3, 4)
        assert (by_unit["urban_management"].numerator, by_unit["urban_management"].denominator) == (2, 2)
        assert by_unit["discipline_commission"].denominator == 0
        on_time = WorkOrderFigures(s).rate_by_unit("on_time", APRIL)
        assert (on_time["urban_management"].numerator, on_time["urban_management"].denominator) == (0, 2)
        assert on_time["discipline_commission"].denominator == 0   # WO8 is of an R7.3c case


def test_a_case_sent_to_one_unit_twice_counts_once_for_it(april_store, domain):
    """A case re-dispatched to the same unit (two work orders) is one case in that unit's case rates."""
    sessions, ids = april_store
    with session_scope(sessions) as s:
        b = Builder(s, domain)
        c1 = s.get(Case, ids["c1"])
        b.order(c1, "water_supply", "04-02 09:00", round_=2, notified="04-02 10:00", reported="04-03 10:00")
    with sessions() as s:
        grouped = CaseFigures(s).rate_by_unit("satisfaction", APRIL)["water_supply"]
        assert (grouped.numerator, grouped.denominator) == (3, 4)   # still C1 C2 C3 C9
        assert assert_parity(s, {"april": APRIL}) > 0


def test_rate_by_unit_equals_rate_per_unit_on_a_generated_city(unit_store):
    """A few hundred generated cases over two months (every kind, channel, status, unit, returns,
    extensions, urges, callbacks, confidential ones): the same parity, month by month."""
    from benchmarks.figures_city import Shape, build_city
    sessions = unit_store
    with sessions() as s:
        engine = s.get_bind()
    shape = Shape(cases=600, calls=300, start=datetime(2026, 3, 1, tzinfo=SH), days=61, seed=7)
    build_city(engine, shape)
    months = {"03": Period.month(2026, 3),
              "a fortnight": Period(datetime(2026, 3, 20, tzinfo=SH), datetime(2026, 3, 20, tzinfo=SH) + timedelta(14))}
    with sessions() as s:
        assert assert_parity(s, months) > 50


def test_the_month_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path, monkeypatch):
    """benchmarks/figures_month.py on SQLite at a few hundred rows (the real run is by hand, 1 M
    cases): it builds and caches the city, and the report with `rate_by_unit` gives the same
    per-unit rates as the baseline's loop of `rate` calls."""
    from benchmarks import figures_month as bench
    from ticketing.store import make_engine, make_session_factory
    monkeypatch.setattr(bench, "CACHE_DIR", tmp_path / "cache")
    args = ["--db", "sqlite", "--cases", "300", "--calls", "900", "--days", "45", "--repeat", "1"]
    result = bench.main(args)["sqlite"]
    assert result["sizes"]["cases"] == 300 and result["sizes"]["calls"] == 900
    assert result["cases_in_month"] > 0 and result["report_s"] > 0 and result["goal_1s"] in ("met", "NOT met")
    cached = list((tmp_path / "cache").glob("city-*.db"))
    assert len(cached) == 1 and not list((tmp_path / "cache").glob("*.building"))
    inode = cached[0].stat().st_ino
    bench.main(args)
    assert cached[0].stat().st_ino == inode          # the second run found the city, built nothing
    engine = make_engine(f"sqlite:///{cached[0]}")
    try:
        with make_session_factory(engine)() as s:
            grouped = bench.month_report(s, Period.month(2026, 11))
            looped = bench.month_report(s, Period.month(2026, 11), per_unit="loop")
        assert grouped["units"] == looped["units"]
        assert sum(r.denominator for rates in grouped["units"].values() for r in rates.values()) > 0
    finally:
        engine.dispose()
