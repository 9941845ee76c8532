"""The queue figures' derived rows (ticketing.queue_entries) and `callcenter stats rebuild`
(issue 12 items 3 and 8), on SQLite and PostgreSQL: the call log keeps them equal to what the raw
AMI events give, the rebuild restores them from the raw events day by day (A1 audited), and an
interrupted rebuild leaves no day half rebuilt and finishes when run again."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select, update

from callcenter.cli import main
from tests.test_figures import APRIL, _call, t
from ticketing.figures import CallFigures, Period
from ticketing.figures.calls import _queue_call, _raw_queue
from ticketing.models import AuditEvent, Call
from ticketing.queue_entries import QueueEntry
from ticketing.store import session_scope

COLUMNS = ("call_id", "queued_at", "queue_joins", "connected_at", "holdtime", "extension", "talktime", "abandoned_at")


def answered(at, hold, ext, talk):
    return [("operator_connected", at, {"holdtime": hold, "operator": ext}, None),
            ("operator_completed", at, {"holdtime": hold, "talktime": talk}, None)]


@pytest.fixture
def calls(sessions):
    """Queued calls over three April days; one sent back to the queue the next day (two joins)."""
    with session_scope(sessions) as s:
        _call(s, "a1", "04-01 09:00", events=[("queued", "04-01 09:00:20", {}, None),
                                              *answered("04-01 09:00:30", 10, "1001", 100)])
        _call(s, "a2", "04-01 10:00", events=[("queued", "04-01 10:00:10", {}, None),
                                              ("queue_abandoned", "04-01 10:00:50", {}, None)])
        _call(s, "b1", "04-02 11:00", events=[("queued", "04-02 11:00:05", {}, None),
                                              *answered("04-02 11:00:25", 20, "1002", 50)])
        _call(s, "c1", "04-03 23:50", events=[("queued", "04-03 23:50:00", {}, None),
                                              *answered("04-03 23:51:00", 60, "1001", 300),
                                              ("queued", "04-04 00:10:00", {}, None)])   # back to the queue
        _call(s, "c2", "04-03 12:00", outcome="self_served")                             # never queued
    return sessions


def entries(s) -> dict[int, tuple]:
    return {row[0]: tuple(row) for row in s.execute(select(*(getattr(QueueEntry, c) for c in COLUMNS)))}


def raw_rows(s, period: Period):
    """The queue rows of every call from its raw events (the reading before the entries)."""
    return [_queue_call(*r) for r in sorted(s.execute(_raw_queue(period, select(Call.id))).all(),
                                            key=lambda r: (r[1], r[0]))]


def test_the_call_log_keeps_entries_equal_to_the_raw_events(calls):
    """Every queue event logged refreshes its call's entry in the same transaction; the figures
    read from entries equal the raw reading, the requeued call included (it counts on both days)."""
    with calls() as s:
        got = entries(s)
        assert set(got) == {1, 2, 3, 4}                       # c2 never joined the queue
        assert got[4][2] == 2 and got[1][2] == 1               # c1 joined twice
        assert (got[1][4], got[1][5], got[1][6]) == (10, "1001", 100)
        for period in (APRIL, Period(t("04-04 00:00"), t("04-05 00:00")), Period(t("04-01 00:00"), t("04-02 00:00"))):
            assert CallFigures(s).queue_calls(period) == raw_rows(s, period)
        day4 = CallFigures(s).queue_calls(Period(t("04-04 00:00"), t("04-05 00:00")))
        assert [(r.call_id, r.queued_at) for r in day4] == [(4, t("04-04 00:10:00"))]


def _rebuild(db_url, monkeypatch, *args):
    from callcenter.settings import get_settings
    monkeypatch.setenv("CALLCENTER_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return CliRunner().invoke(main, ["stats", "rebuild", *args], catch_exceptions=True)


def _spoil(s) -> None:
    """Entries as an older definition left them: wrong values, a missing row."""
    s.execute(update(QueueEntry).values(holdtime=999, talktime=None))
    s.execute(delete(QueueEntry).where(QueueEntry.call_id == 3))


def actions(s) -> list[str]:
    return [a for a in s.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars()
            if a.startswith("stats_rebuild")]


def test_stats_rebuild_recomputes_entries_from_the_raw_events(calls, db_url, monkeypatch):
    with calls() as s:
        fresh = entries(s)
    with session_scope(calls) as s:
        _spoil(s)
    r = _rebuild(db_url, monkeypatch, "--since", "2026-03-31", "--until", "2026-04-06")
    assert r.exit_code == 0, r.output
    assert "6 days rebuilt (2026-03-31 .. 2026-04-05), 5 queued calls" in r.output   # c1 on two days
    with calls() as s:
        assert entries(s) == fresh
        assert actions(s) == ["stats_rebuild_started", "stats_rebuild_finished"]   # A1
        done = s.execute(select(AuditEvent.data).where(AuditEvent.action == "stats_rebuild_finished")).scalar_one()
        assert (done["days"], done["queued_calls"], done["missing"]) == (6, 5, 0)


def test_stats_rebuild_by_default_covers_every_day_with_a_queued_call(calls, db_url, monkeypatch):
    with session_scope(calls) as s:
        _spoil(s)
    r = _rebuild(db_url, monkeypatch)
    assert r.exit_code == 0, r.output
    with calls() as s:
        assert entries(s)[3][4] == 20 and entries(s)[1][4] == 10


def test_an_interrupted_rebuild_leaves_no_day_half_done_and_a_rerun_finishes(calls, db_url, monkeypatch):
    """Interrupted on its third day (04-03): 04-01 and 04-02 are rebuilt, 04-03 is as it was (its
    transaction rolled back), no `finished` in the audit record; run again, everything is rebuilt."""
    import ticketing.queue_entries as qe
    with calls() as s:
        fresh = entries(s)
    with session_scope(calls) as s:
        _spoil(s)
    with calls() as s:
        spoiled = entries(s)
    real = qe.rebuild_day
    seen = []

    def interrupted(session, since, until):
        seen.append(since)
        done = real(session, since, until)
        if len(seen) == 3:
            raise KeyboardInterrupt   # Ctrl-C after the day's statements, before its commit
        return done

    monkeypatch.setattr(qe, "rebuild_day", interrupted)
    r = _rebuild(db_url, monkeypatch, "--since", "2026-04-01", "--until", "2026-04-05")
    assert r.exit_code != 0
    with calls() as s:
        now = entries(s)
        assert now[1] == fresh[1] and now[2] == fresh[2] and now[3] == fresh[3]   # 04-01, 04-02 done
        assert now[4] == spoiled[4]                                             # 04-03 untouched
        assert actions(s) == ["stats_rebuild_started"]
    monkeypatch.setattr(qe, "rebuild_day", real)
    r = _rebuild(db_url, monkeypatch, "--since", "2026-04-01", "--until", "2026-04-05")
    assert r.exit_code == 0, r.output
    with calls() as s:
        assert entries(s) == fresh
        assert actions(s) == ["stats_rebuild_started", "stats_rebuild_started", "stats_rebuild_finished"]


def test_stats_rebuild_refuses_an_empty_range(calls, db_url, monkeypatch):
    r = _rebuild(db_url, monkeypatch, "--since", "2026-04-05", "--until", "2026-04-05")
    assert r.exit_code == 2 and "--until must be after --since" in r.output


def test_queue_figures_from_entries_equal_the_raw_reading_on_a_generated_city(sessions, domain):
    """A generated month of calls (benchmarks/figures_city.py, its entries filled as migration 0016
    fills them): the rows, and so every queue figure, per hour and per operator, are the raw ones."""
    from datetime import datetime

    from benchmarks.figures_city import SH, Shape, build_city
    from ticketing.figures.calls import summarize
    from ticketing.seed import seed_units
    with session_scope(sessions) as s:
        seed_units(s, domain.city, domain.clock())
    with sessions() as s:
        engine = s.get_bind()
    build_city(engine, Shape(cases=50, calls=1500, start=datetime(2026, 4, 1, tzinfo=SH), days=30, seed=3))
    with sessions() as s:
        f = CallFigures(s)
        rows = f.queue_calls(APRIL)
        assert len(rows) > 1000 and rows == raw_rows(s, APRIL)
        assert f.queue(APRIL) == summarize(raw_rows(s, APRIL), 15.0, 5.0)
        assert sum(q.offered for q in f.by_hour(APRIL).values()) == len(rows)
