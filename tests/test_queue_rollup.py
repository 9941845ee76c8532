"""The daily rollups (issue 12 item 3) give the raw reading's numbers, on SQLite and PostgreSQL:
the queue figures' (ticketing.figures.queue_rollup: offered, answered, 15 s, abandoned, wait and
talk with their p90, per hour of day and per operator) and the rates' (ticketing.figures.rollup),
on the hand-built data sets whose figures tests/test_figures.py works out by hand (R7.3c cases
included), on a generated city, after changes (marked, read raw until refreshed), after the
refresh and after `callcenter stats rebuild`."""
from __future__ import annotations

from datetime import datetime

from click.testing import CliRunner
from sqlalchemy import delete, func, select, update

from callcenter.cli import main
from tests import test_figures as hand
from tests.test_figure_rollup import PERIODS, city  # noqa: F401 (the generated city's fixture)
from tests.test_figures import (  # noqa: F401
    APRIL,
    SH,
    april,
    build_calls,
    check_call_figures,
    t,
    units,
)
from ticketing import calls as call_log
from ticketing.figure_days_model import FigureDay
from ticketing.figures import CallFigures, Period, Thresholds, TimeStats
from ticketing.figures.calls import time_bucket
from ticketing.figures.queue_rollup import refresh_queue_days, refresh_queue_stale
from ticketing.figures.rollup import refresh_stale, rollup_readers
from ticketing.models import Call
from ticketing.queue_days_model import DAY_ROW, QueueDay, QueueStaleDay
from ticketing.store import session_scope

DAY1 = datetime(2026, 4, 1, tzinfo=SH).date()


def refresh(sessions) -> int:
    with session_scope(sessions) as s:
        return refresh_queue_stale(CallFigures(s, use_rollup=False))


def marks(s) -> int:
    return s.execute(select(func.count()).select_from(QueueStaleDay)).scalar()


def assert_queue_equals_raw(s, periods) -> int:
    """The whole period, per hour, per operator, per day: rollup reader == raw reader == the
    drill-down's per-call summary (`summarize` over `queue_calls`). Returns calls compared."""
    n = 0
    for label, period in periods.items():
        rolled, raw, per_call = CallFigures(s), CallFigures(s, use_rollup=False), CallFigures(s)
        rows = per_call.queue_calls(period)
        for view in ("queue", "by_hour", "by_operator", "by_day"):
            assert getattr(rolled, view)(period) == getattr(raw, view)(period), (label, view)
            assert getattr(raw, view)(period) == getattr(per_call, view)(period, calls=rows), (label, view)
        n += raw.queue(period).offered
    return n


def test_p90_buckets_whole_seconds_to_a_minute_then_coarser():
    """The p90's resolution (ticketing.figures.calls.time_bucket): a time rounded up to 1 s up to
    60 s, 5 s up to 300 s, 30 s up to 1800 s, 300 s beyond."""
    assert [time_bucket(ms) for ms in (0, 400, 15_000, 15_001, 60_000, 60_001, 300_000, 300_001,
                                       1_800_000, 1_800_001)] == [0, 1, 15, 16, 60, 65, 300, 330, 1800, 2100]
    # 1..8, 12.3 and 100 s: 10 values, nearest rank ceil(0.9 * 10) = 9 -> the 9th, 12.3 s, in its
    # bucket (12, 13] -> 13; mean (36 + 12.3 + 100) / 10 = 14.83.
    stats = TimeStats.of([1, 2, 3, 4, 5, 6, 7, 8, 12.3, 100])
    assert (stats.count, stats.average, stats.p90) == (10, 14.83, 13)
    assert TimeStats.of([]) == TimeStats(0, None, None)


def test_hand_built_calls_from_the_rollup_give_the_hand_worked_figures(sessions, domain):
    """tests/test_figures.py's k1..k12: the call log's writes marked their days; once refreshed
    the month is read from the rollup and every hand-worked figure holds (a reader with another
    15 s threshold reads raw: the rollup was counted with 15 s)."""
    with session_scope(sessions) as s:
        op1, op2 = build_calls(s, domain)
    with sessions() as s:
        assert marks(s) > 0
    assert refresh(sessions) >= 2
    with sessions() as s:
        assert marks(s) == 0
        assert s.execute(select(func.count()).select_from(QueueDay).where(QueueDay.day == DAY1)).scalar() > 3
        check_call_figures(s, domain, CallFigures(s), op1, op2)
        assert assert_queue_equals_raw(s, {"april": APRIL, "1 april": Period(t("04-01 00:00"), t("04-02 00:00")),
                                           "april 1 from 10:00": Period(t("04-01 10:00"), t("04-03 00:00"))}) == 7 + 7 + 5


def test_a_rollup_row_is_read_and_a_stale_mark_sends_the_reader_back_to_the_raw_rows(sessions, domain):
    with session_scope(sessions) as s:
        build_calls(s, domain)
    refresh(sessions)
    with session_scope(sessions) as s:
        s.execute(update(QueueDay).where(QueueDay.day == DAY1, QueueDay.hour == DAY_ROW, QueueDay.operator == "")
                  .values(offered=QueueDay.offered + 100))
    with session_scope(sessions) as s:
        assert CallFigures(s).queue(APRIL).offered == 107
        s.add(QueueStaleDay(day=DAY1, marks=1))
    with sessions() as s:
        assert CallFigures(s).queue(APRIL).offered == 7


def test_changes_to_calls_mark_their_day_and_the_refresh_makes_it_good(sessions, domain):
    """An operator set on a call later, a new queue event (k12 abandoned), a call sent back to the
    queue on the next day (it counts once per period, at its first join in it: read raw always)."""
    with session_scope(sessions) as s:
        op1, _ = build_calls(s, domain)
    refresh(sessions)
    with session_scope(sessions) as s:
        k6 = s.execute(select(Call).where(Call.uniqueid == "k6")).scalar_one()
        k6.operator_id = op1
        k12 = s.execute(select(Call.id).where(Call.uniqueid == "k12")).scalar_one()
        call_log.add_event(s, k12, kind="queue_abandoned", at=t("04-01 11:40:14"), dedup_key="x:k12")
        k2 = s.execute(select(Call.id).where(Call.uniqueid == "k2")).scalar_one()
        call_log.add_event(s, k2, kind="queued", at=t("04-02 09:00:00"), dedup_key="x:k2")
    periods = {"april": APRIL, "1 april": Period(t("04-01 00:00"), t("04-02 00:00")),
               "2 april": Period(t("04-02 00:00"), t("04-03 00:00"))}
    with sessions() as s:
        assert marks(s) > 0
        assert assert_queue_equals_raw(s, periods) == 7 + 7 + 1
        ops = CallFigures(s).by_operator(APRIL)
        assert "ext:1003" not in ops and ops[str(op1)].answered == 3   # k6 now op1's
        assert CallFigures(s).queue(APRIL).abandoned == 3              # k12 abandoned after 4 s
    assert refresh(sessions) > 0
    with sessions() as s:
        assert marks(s) == 0
        assert assert_queue_equals_raw(s, periods) == 7 + 7 + 1


def test_the_generated_city_queue_from_the_rollup_equals_the_raw_reading(city):  # noqa: F811
    with city() as s:
        assert assert_queue_equals_raw(s, PERIODS) > 100                 # nothing computed: raw
    assert refresh(city) >= 30                                        # the days with queued calls
    with city() as s:
        assert s.execute(select(func.count(func.distinct(QueueDay.day)))).scalar() >= 30
        assert assert_queue_equals_raw(s, PERIODS) > 100


def test_stats_rebuild_and_the_background_refresh_compute_the_queue_rollup(city, db_url, domain, engine,  # noqa: F811
                                                                         monkeypatch):
    from callcenter.figures_refresh import RollupRefresher
    from callcenter.settings import get_settings
    assert RollupRefresher(domain, engine).refresh_once() >= 61 + 30   # rate days and queue days
    with session_scope(city) as s:
        s.execute(update(QueueDay).values(offered=QueueDay.offered + 7))  # a definition "changed"
    with city() as s:
        march = PERIODS["march"]
        assert CallFigures(s).queue(march).offered > CallFigures(s, use_rollup=False).queue(march).offered
    monkeypatch.setenv("CALLCENTER_DATABASE_URL", db_url)
    get_settings.cache_clear()
    result = CliRunner().invoke(main, ["stats", "rebuild", "--since", "2026-02-28", "--until", "2026-05-02"])
    assert result.exit_code == 0, result.output
    with city() as s:
        assert marks(s) == 0
        assert assert_queue_equals_raw(s, PERIODS) > 100


def test_rollup_days_keep_their_thresholds(sessions, domain):
    """A day counted with a 45 s threshold is not read by a 15 s reader, and the other way round."""
    with session_scope(sessions) as s:
        build_calls(s, domain)
    wide = Thresholds.for_policy(domain.policy, answer_within_s=45)
    with session_scope(sessions) as s:
        s.execute(delete(QueueStaleDay))
        refresh_queue_days(CallFigures(s, wide, use_rollup=False), [DAY1])
        s.execute(update(QueueDay).values(fast=QueueDay.fast + 50))   # visible only to a 45 s reader
    with sessions() as s:
        assert CallFigures(s, wide).queue(APRIL).answered_within.numerator == 4 + 50
        assert CallFigures(s).queue(APRIL).answered_within.numerator == 3


def test_hand_built_cases_from_the_rate_rollup_give_the_hand_worked_figures_r7_3c_too(april):  # noqa: F811
    """tests/test_figures.py's April cases (C8 an R7.3c case: in the totals only), with every day's
    rate rollup computed: the hand-worked case and work-order figures hold, read from the rollup."""
    sessions, _ = april
    with session_scope(sessions) as s:
        assert refresh_stale(rollup_readers(s)) > 0
    with sessions() as s:
        assert s.execute(select(func.count()).select_from(FigureDay)).scalar() > 100
    for test in (hand.test_r3_1_intake_counts_by_reason_kind_category_channel_and_unit_r7_3c_only_in_totals,
                 hand.test_r7_3_same_day_and_back_office_dispatch,
                 hand.test_satisfaction_first_time_closed_callback_reach_and_repeat_callers,
                 hand.test_r8_2_r8_3_response_on_time_returns_extensions_urges_by_unit):
        test(april)
