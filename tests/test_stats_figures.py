"""The figures the statistics page adds (issue 12 item 6): the 接通率 trend per day, overdue work by
unit now, and the drill-down lists behind the intake breakdowns and the queue figures, on the
hand-built April 2026 of tests/test_figures.py (SQLite and PostgreSQL). Every expected number is
worked out by hand below; each list is checked against the count it stands behind."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from callcenter.auth import create_user
from tests import test_figures
from tests.conftest import PASSWORD
from tests.test_figures import APRIL, Builder, _call, t
from ticketing.enums import CaseKind, CaseStatus, Channel, WorkOrderStatus
from ticketing.figures import CallFigures, CaseFigures, OverdueFigures, Period
from ticketing.models import Case
from ticketing.store import session_scope

april, units = test_figures.april, test_figures.units  # the hand-built April and its units (fixtures)
# build_cases numbers its cases in the order it makes them (20260401-000001 ...)
ORDER = ("c13", "c10", "c1", "c2", "c4", "c3", "c5", "c6", "c7", "c8", "c9", "c11")


def case_ids(s) -> dict[str, int]:
    rows = dict(s.execute(select(Case.number, Case.id)).all())
    return {name: rows[f"20260401-{i:06d}"] for i, name in enumerate(ORDER, start=1)}


def test_r3_1_r7_3c_every_intake_breakdown_lists_the_cases_it_counts(april):
    """The drill-down of each intake figure is the same cases the figure counts (test_figures:
    accepted 8 = C1 C2 C3 C4 C5 C8 C9 C11; by category X = C1 C2 C9; landline C1 C4 C5 (C8, R7.3c,
    counts in `accepted` only); sent to W: C1 C2 C3 C9; rejected for legal proceedings: C7)."""
    sessions, _ = april
    with sessions() as s:
        ids = case_ids(s)
        f = CaseFigures(s)
        by = lambda *names: sorted(ids[n] for n in names)
        assert f.case_rows(APRIL) == by("c1", "c2", "c3", "c4", "c5", "c8", "c9", "c11")
        assert f.case_rows(APRIL, part="received") == by("c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c11")
        assert f.case_rows(APRIL, category="water_supply") == by("c1", "c2", "c9")
        assert f.case_rows(APRIL, channel="landline") == by("c1", "c4", "c5")
        assert f.case_rows(APRIL, to_unit="water_supply") == by("c1", "c2", "c3", "c9")
        assert f.case_rows(APRIL, part="rejected", reason="legal_proceedings") == by("c7")
        assert f.case_rows(APRIL, category="discipline_economic") == []                 # R7.3c: in no breakdown
        # closed in April: C10 C1 C2 C3 C5 C8 C9
        assert f.case_rows(APRIL, part="closed") == by("c10", "c1", "c2", "c3", "c5", "c8", "c9")
        # a unit's breakdown by unit holds itself only
        assert f.case_rows(APRIL, "water_supply", to_unit="urban_management") == []
        assert f.case_rows(APRIL, "urban_management", to_unit="urban_management") == by("c3", "c4")

        # every count of every breakdown, total and per unit, has exactly its list behind it
        for unit in (None, "water_supply", "urban_management", "discipline_commission"):
            intake = f.intake(APRIL, unit)
            assert len(f.case_rows(APRIL, unit)) == intake.accepted
            assert len(f.case_rows(APRIL, unit, part="rejected")) == intake.rejected
            for field, counts in (("kind", intake.by_kind), ("category", intake.by_category),
                                  ("channel", intake.by_channel), ("to_unit", intake.by_unit)):
                for key, n in counts.items():
                    assert len(f.case_rows(APRIL, unit, **{field: key})) == n, (unit, field, key)
            for reason, n in intake.rejected_by_reason.items():
                assert len(f.case_rows(APRIL, unit, part="rejected", reason=reason)) == n
            assert len(f.case_rows(APRIL, unit, part="closed")) == f.closing(APRIL, unit).closed
        with pytest.raises(ValueError):
            f.case_rows(APRIL, part="closed", kind="complaint")


def add_overdue(s, domain) -> dict[str, int]:
    """Four work orders still out on 2026-05-06 (Labour Day: 05-01 .. 05-05 off), beside April's."""
    b = Builder(s, domain)
    b.n = 100
    C, K = CaseKind, Channel
    # WO20 to W, Mon 04-27, never notified: notify due 2 working days -> 04-29 17:30 (missed);
    # report due 5 working days: 04-28, 29, 30, (05-01 .. 05-05 holiday) 05-06, 05-07 -> 05-07
    # 17:30: not overdue on 05-06 (by calendar days it would have been due 05-02).
    c20 = b.case(C.CONSULTATION, K.MOBILE, "water_supply", "", "04-27 08:50", status=CaseStatus.DISPATCHED)
    wo20 = b.order(c20, "water_supply", "04-27 09:00")
    assert (wo20.notify_due_at, wo20.report_due_at) == (t("04-29 17:30"), t("05-07 17:30"))
    # WO22 to W, Fri 04-10, notified, return asked for (still W's): report due 5 working days ->
    # 04-17 17:30, missed.
    c22 = b.case(C.CONSULTATION, K.MOBILE, "water_supply", "", "04-10 08:50", status=CaseStatus.DISPATCHED)
    wo22 = b.order(c22, "water_supply", "04-10 09:00", notified="04-13 09:00",
                   status=WorkOrderStatus.RETURN_REQUESTED)
    assert wo22.report_due_at == t("04-17 17:30")
    # WO21, R7.3c, to D, 04-10, notified, unreported: a complaint, 10 working days -> 04-24
    # 17:30, missed: in the total only.
    c21 = b.case(C.COMPLAINT, K.LANDLINE, "discipline_economic", "", "04-10 08:50", confidential=True,
                 status=CaseStatus.DISPATCHED)
    wo21 = b.order(c21, "discipline_commission", "04-10 09:00", notified="04-13 09:00")
    assert wo21.report_due_at == t("04-24 17:30")
    # WO23 to W, cancelled by a re-dispatch before notifying: no longer anyone's to do.
    c23 = b.case(C.CONSULTATION, K.MOBILE, "water_supply", "", "04-10 08:50", status=CaseStatus.DISPATCHED)
    b.order(c23, "water_supply", "04-10 09:00", status=WorkOrderStatus.CANCELLED)
    s.flush()
    return {"wo20": wo20.id, "wo21": wo21.id, "wo22": wo22.id, "c20": c20.id, "c21": c21.id, "c22": c22.id}


@pytest.fixture
def overdue_april(april, domain):
    sessions, ids = april
    with session_scope(sessions) as s:
        more = add_overdue(s, domain)
    return sessions, {**ids, **more}


def test_t3_r8_2_r8_3_overdue_now_by_unit_r7_3c_in_the_total_only(overdue_april):
    """On 05-06 12:00, past the report deadline: WO4 (U, due 04-21, test_figures), WO22 (W, 04-17),
    WO21 (D, 04-24, R7.3c) -> 3; past the notify deadline: WO20 (W, 04-29) -> 1. By unit: U 1 / 0,
    W 1 / 1; D is not listed (its only overdue work is R7.3c). WO23 (cancelled) nowhere."""
    sessions, ids = overdue_april
    now = t("05-06 12:00")
    with sessions() as s:
        f = OverdueFigures(s)
        total = f.count(now)
        assert (total.report, total.notify) == (3, 1)
        by_unit = f.by_unit(now)
        assert {code: (c.report, c.notify) for code, c in by_unit.items()} == {
            "urban_management": (1, 0), "water_supply": (1, 1)}
        assert f.count(now, "water_supply") == by_unit["water_supply"]
        assert (f.count(now, "discipline_commission").report, f.count(now, "discipline_commission").notify) == (0, 0)
        # the lists behind the counts, earliest deadline first
        assert f.overdue_rows(now, "water_supply") == [ids["wo22"]]
        assert f.overdue_rows(now, "water_supply", deadline="notify") == [ids["wo20"]]
        report_rows = f.overdue_rows(now)
        assert len(report_rows) == 3 and report_rows[0] == ids["wo22"] and report_rows[2] == ids["wo21"]
        # a day after WO20's report deadline (05-08 09:00) it is past both
        later = f.count(t("05-08 09:00"), "water_supply")
        assert (later.report, later.notify) == (2, 1)


def test_gb_t_33358_answer_rate_per_day_and_the_calls_behind_each_queue_figure(sessions, domain):
    """The 接通率 / 15 s trend: calls grouped by the local day they joined the queue (a call queued
    at 23:59:50 on 03-31 Shanghai time is 15:59:50 UTC and counts for 03-31, not April); the
    drill-down of each queue figure lists the calls it counts."""
    with session_scope(sessions) as s:
        op1 = create_user(s, username="op1", password=PASSWORD, role="front_desk", now=domain.clock()).id

        def answered(at, hold):
            return [("operator_connected", at, {"holdtime": hold, "operator": "1001"}, op1),
                    ("operator_completed", at, {"holdtime": hold, "talktime": 60}, None)]

        a = _call(s, "d1", "04-01 09:00", events=[("queued", "04-01 09:00:10", {}, None), *answered("04-01 09:00:20", 10)])
        b = _call(s, "d2", "04-01 23:59", events=[("queued", "04-01 23:59:30", {}, None), *answered("04-02 00:00:00", 30)])
        c = _call(s, "d3", "04-02 08:00", events=[("queued", "04-02 08:00:10", {}, None),
                                                  ("queue_abandoned", "04-02 08:00:14", {}, None)])
        d = _call(s, "d4", "04-02 08:30", events=[("queued", "04-02 08:30:10", {}, None), *answered("04-02 08:30:15", 5)])
        _call(s, "d5", "03-31 23:59", events=[("queued", "03-31 23:59:50", {}, None)])  # March

    with sessions() as s:
        f = CallFigures(s)
        days = f.by_day(APRIL)
        # 04-01: d1 (10 s) d2 (queued 23:59:30, answered after 30 s) -> offered 2, answered 2, 15 s 1 / 2.
        # 04-02: d3 abandoned after 4 s, d4 answered in 5 s -> offered 2, answered 1 / 2, 15 s 1 / 2.
        assert {str(k): (x.offered, x.answered, x.answered_within.numerator, x.abandoned) for k, x in days.items()} == {
            "2026-04-01": (2, 2, 1, 0), "2026-04-02": (2, 1, 1, 1)}
        assert sum(x.offered for x in days.values()) == f.queue(APRIL).offered == 4
        ids = lambda rows: [r.call_id for r in rows]
        assert ids(f.queue_rows(APRIL)) == [a, b, c, d]
        assert ids(f.queue_rows(APRIL, "answered_within")) == [a, d]
        assert ids(f.queue_rows(APRIL, "abandoned_short")) == [c]                 # 4 s <= 5 s
        day2 = days[t("04-02 00:00").date()]
        assert ids(f.queue_rows(APRIL, "answered", day=t("04-02 00:00").date())) == [d]
        assert len(f.queue_rows(APRIL, "answered_within", day=t("04-02 00:00").date())) == day2.answered_within.numerator
        assert ids(f.queue_rows(APRIL, "offered", hour=23)) == [b]
        assert ids(f.queue_rows(APRIL, "answered", operator=str(op1))) == [a, b, d]
        # a shorter period (04-02 only) keeps only its own calls
        only = Period(t("04-02 00:00"), t("04-03 00:00"))
        assert ids(f.queue_rows(only)) == [c, d]
