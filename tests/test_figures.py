"""The figures (issue 12 item 1, ticketing.figures) on a hand-built April 2026, on SQLite and
PostgreSQL. Every expected number is worked out by hand below, with the arithmetic.

April 2026 in Shanghai: Qingming is Sat 04-04 .. Mon 04-06 (04-06 a public holiday), so 04-06
is no working day; no make-up working day in April. Deadlines are stored as the workflow stores
them (ticketing.deadlines, office-day end 17:30) and the figures read them, never recount.

Units: W = water_supply, U = urban_management, D = discipline_commission.
Categories: X = water_supply, Y = city_appearance, Z = policy_consultation.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from callcenter.auth import create_user

from ticketing import calls as call_log
from ticketing.deadlines import Deadlines
from ticketing.enums import (
    CaseKind,
    CaseStatus,
    Channel,
    DispatchMode,
    RejectReason,
    RequestState,
    Satisfaction,
    WorkOrderRole,
    WorkOrderStatus,
)
from ticketing.figures import CallFigures, CaseFigures, Period, Thresholds, WorkOrderFigures
from ticketing.models import Call, CallbackAttempt, Case, ExtensionRequest, MemberUnit, UnitNotification, WorkOrder
from ticketing.seed import seed_units
from ticketing.store import session_scope
from tests.conftest import PASSWORD

SH = ZoneInfo("Asia/Shanghai")
APRIL = Period.month(2026, 4)
P1, P2, P3, P4, P5 = (f"1390000000{i}" for i in range(1, 6))


def t(text: str) -> datetime:
    """'04-07 10:00' (or '04-07 10:00:13'): that moment of 2026 in Shanghai; '03-25 ...' likewise."""
    return datetime.fromisoformat(f"2026-{text}").replace(tzinfo=SH)


class Builder:
    """Rows as the workflow leaves them, with the deadlines it would store."""

    def __init__(self, session, domain):
        self.s = session
        self.dl = Deadlines(domain.policy, domain.calendar)
        self.units = {u.code: u.id for u in session.execute(select(MemberUnit)).scalars()}
        self.n = 0

    def case(self, kind, channel, category, phone, accepted, *, status=CaseStatus.CLOSED, **fields) -> Case:
        self.n += 1
        c = Case(number=f"20260401-{self.n:06d}", kind=kind, channel=channel, status=status,
                 category_code=category, citizen_phone=phone, title="诉求", description="内容",
                 accepted_at=t(accepted), updated_at=t(accepted), **fields)
        self.s.add(c)
        self.s.flush()
        return c

    def order(self, case, unit, dispatched, *, round_=1, notified=None, reported=None, status=None,
              extension_days=None, extension_decided=None) -> WorkOrder:
        at = t(dispatched)
        report_due = self.dl.report_due(case.kind.value, at)
        wo = WorkOrder(case_id=case.id, unit_id=self.units[unit], mode=DispatchMode.WORK_ORDER,
                       role=WorkOrderRole.SOLE, round=round_, dispatched_at=at,
                       notify_due_at=self.dl.notify_due(at).at, report_due_at=report_due.at,
                       return_due_at=self.dl.return_due(at).at, urged_thresholds=[],
                       status=status or (WorkOrderStatus.REPORTED if reported else
                                         WorkOrderStatus.NOTIFIED if notified else WorkOrderStatus.DISPATCHED))
        self.s.add(wo)
        self.s.flush()
        if extension_days:  # R8.5: approved, the stored deadline moves (as decide_extension does)
            new_due = self.dl.extended(report_due, extension_days)
            self.s.add(ExtensionRequest(work_order_id=wo.id, legal_basis="《条例》第九条", state=RequestState.APPROVED,
                                        extra_working_days=extension_days, requested_at=at, old_due_at=wo.report_due_at,
                                        decided_at=t(extension_decided), new_due_at=new_due.at))
            wo.report_due_at = new_due.at
        if notified:
            wo.received_at = wo.notified_at = t(notified)
            wo.notify_met = wo.notified_at <= wo.notify_due_at
        if reported:
            wo.reported_at = t(reported)
            wo.report_met = wo.reported_at <= wo.report_due_at
        if case.dispatched_at is None or at > case.dispatched_at:
            case.dispatched_at = at
        return wo

    def urge(self, wo, at):
        wo.urge_count += 1
        wo.last_urged_at = t(at)
        self.s.add(UnitNotification(unit_id=wo.unit_id, work_order_id=wo.id, case_id=wo.case_id, at=t(at),
                                    kind="urge", message="【12345催办】"))

    def callback(self, case, state, finished):
        n = 1 + sum(1 for _ in self.s.execute(select(CallbackAttempt.id).where(CallbackAttempt.case_id == case.id)))
        self.s.add(CallbackAttempt(case_id=case.id, attempt_no=n, idempotency_key=f"cb-{case.number}-{n}",
                                   state=state, scheduled_for=t(finished), started_at=t(finished),
                                   finished_at=t(finished)))
        self.s.flush()


def build_cases(s, domain) -> dict[str, int]:
    b = Builder(s, domain)
    C, K, S = CaseKind, Channel, Satisfaction
    ids: dict[str, int] = {}

    # C13 (February; only there to be too old for C9's repeat window).
    b.case(C.CONSULTATION, K.LANDLINE, "water_supply", P5, "02-10 10:00", answered_directly=True,
           satisfaction=S.SATISFIED, closed_at=t("02-10 10:10"))

    # C10 (March) to U: report due 5 working days after 03-25 = 03-26, 27, 30, 31, 04-01 -> 04-01
    # 17:30, in April; reported 04-02 (late). Closed 04-03 satisfied, in April.
    c10 = b.case(C.CONSULTATION, K.LANDLINE, "city_appearance", P2, "03-25 10:00",
                 satisfaction=S.SATISFIED, closed_at=t("04-03 11:00"))
    wo10 = b.order(c10, "urban_management", "03-25 10:30", notified="03-26 10:00", reported="04-02 10:00")
    assert wo10.report_due_at == t("04-01 17:30") and wo10.report_met is False
    b.callback(c10, "done", "04-03 10:00")

    # C1 to W the same day. Notify due 2 working days after 04-01: 04-02, 04-03 -> 04-03 17:30.
    # Report due 5 working days: 04-02, 03, (04, 05 weekend, 06 Qingming) 07, 08, 09 -> 04-09 17:30;
    # reported 04-08: on time (counting calendar days it would have been due 04-06 and late).
    c1 = b.case(C.CONSULTATION, K.LANDLINE, "water_supply", P1, "04-01 10:00",
                satisfaction=S.SATISFIED, closed_at=t("04-10 11:00"))
    wo1 = b.order(c1, "water_supply", "04-01 10:30", notified="04-02 10:00", reported="04-08 12:00")
    assert (wo1.notify_due_at, wo1.report_due_at) == (t("04-03 17:30"), t("04-09 17:30"))
    b.callback(c1, "no_answer", "04-09 10:00")
    b.callback(c1, "done", "04-10 10:00")

    # C2 to W the same day (P1 again, category X: a repeat of C1 within 30 days).
    # Notify due 2 working days after Fri 04-03: 04-07, 04-08 -> 04-08 17:30; notified 04-09: late.
    # Report due 5 working days: 04-07, 08, 09, 10, 13 -> 04-13 17:30; extended by 3 (R8.5):
    # 04-14, 15, 16 -> 04-16 17:30; reported 04-15: on time, against the approved deadline.
    c2 = b.case(C.CONSULTATION, K.MOBILE, "water_supply", P1, "04-03 09:00",
                satisfaction=S.BASICALLY_SATISFIED, closed_at=t("04-17 11:00"))
    wo2 = b.order(c2, "water_supply", "04-03 09:30", notified="04-09 09:00", reported="04-15 10:00",
                  extension_days=3, extension_decided="04-10 09:00")
    assert (wo2.notify_due_at, wo2.report_due_at, wo2.notify_met) == (t("04-08 17:30"), t("04-16 17:30"), False)
    b.urge(wo2, "04-13 09:00")
    b.callback(c2, "done", "04-17 10:00")

    # C4, accepted Fri 04-03 16:00, escalated: the back office dispatches within 3 calendar days,
    # 04-06, a holiday -> the next working day 04-07 17:30; dispatched 04-07 10:00: on time.
    # Report due 10 working days after 04-07: 08, 09, 10, 13, 14, 15, 16, 17, 20, 21 -> 04-21 17:30;
    # never reported: missed. Urged twice.
    c4 = b.case(C.SUGGESTION, K.LANDLINE, "city_appearance", P3, "04-03 16:00", status=CaseStatus.DISPATCHED,
                dispatch_due_at=b.dl.back_office_dispatch_due(t("04-03 16:00")).at)
    assert c4.dispatch_due_at == t("04-07 17:30")
    wo4 = b.order(c4, "urban_management", "04-07 10:00", notified="04-08 10:00")
    c4.dispatch_met = True
    assert wo4.report_due_at == t("04-21 17:30")
    b.urge(wo4, "04-20 09:00")
    b.urge(wo4, "04-22 09:00")

    # C3 (P2, category Y: a repeat of C10, 13 days before) to U the same day; U returns it (R8.6,
    # approved 04-08 10:00, before notifying); back office due 04-08 + 3 = Sat 04-11 -> Mon 04-13
    # 17:30; dispatched again (round 2) to W 04-09: on time. W reports 04-22 (due 10 working days
    # after 04-09 -> 04-23 17:30). Closed satisfied, but not the first time (a return, round 2).
    c3 = b.case(C.COMPLAINT, K.WEB, "city_appearance", P2, "04-07 09:00", satisfaction=S.SATISFIED,
                closed_at=t("04-24 11:00"), dispatch_due_at=b.dl.back_office_dispatch_due(t("04-08 10:00")).at,
                dispatch_met=True)
    assert c3.dispatch_due_at == t("04-13 17:30")
    b.order(c3, "urban_management", "04-07 10:00", status=WorkOrderStatus.RETURNED).return_reason = "非本单位职责"
    wo3b = b.order(c3, "water_supply", "04-09 09:00", round_=2, notified="04-09 15:00", reported="04-22 10:00")
    assert wo3b.report_due_at == t("04-23 17:30") and wo3b.report_met is True
    b.callback(c3, "done", "04-24 10:00")

    # C5 answered directly (R7.2), no phone given.
    b.case(C.CONSULTATION, K.LANDLINE, "policy_consultation", "", "04-14 10:00", answered_directly=True,
           satisfaction=S.SATISFIED, closed_at=t("04-14 10:20"))

    # C6, C7 not accepted (R3.1).
    b.case(C.COMPLAINT, K.MOBILE, "city_appearance", P3, "04-15 09:00", status=CaseStatus.REJECTED,
           reject_reason=RejectReason.OUTSIDE_JURISDICTION, closed_at=t("04-15 09:10"), assessed=False)
    b.case(C.COMPLAINT, K.LANDLINE, "water_supply", "", "04-15 10:00", status=CaseStatus.REJECTED,
           reject_reason=RejectReason.LEGAL_PROCEEDINGS, closed_at=t("04-15 10:10"), assessed=False)

    # C8, R7.3c (confidential) to D: notify due 2 working days after Thu 04-16 -> Mon 04-20 17:30,
    # notified 04-21: late; report due 10 working days: 17, 20, 21, 22, 23, 24, 27, 28, 29, 30 ->
    # 04-30 17:30, reported 04-29. Urged once. Closed without callback or rating.
    c8 = b.case(C.COMPLAINT, K.LANDLINE, "discipline_economic", P4, "04-16 09:00", confidential=True,
                assessed=False, callback_required=False, closed_at=t("04-29 16:00"))
    wo8 = b.order(c8, "discipline_commission", "04-16 09:30", notified="04-21 09:00", reported="04-29 15:00")
    assert (wo8.notify_due_at, wo8.notify_met, wo8.report_due_at) == (t("04-20 17:30"), False, t("04-30 17:30"))
    b.urge(wo8, "04-21 08:00")

    # C9 to W (P5, category X: C13 is 69 days earlier, no repeat within 30). Reported on time;
    # the automatic callback never reached the citizen (no answer, busy); an operator called and
    # they were unsatisfied: closed provisionally (R7.5). An extension asked for and denied.
    c9 = b.case(C.CONSULTATION, K.FAX, "water_supply", P5, "04-20 09:00", satisfaction=S.UNSATISFIED,
                closed_at=t("04-24 16:00"), closed_provisionally=True, callback_done_at=t("04-23 15:00"))
    wo9 = b.order(c9, "water_supply", "04-20 09:30", notified="04-21 10:00", reported="04-22 10:00")
    b.s.add(ExtensionRequest(work_order_id=wo9.id, legal_basis="《条例》第九条", extra_working_days=2,
                             state=RequestState.DENIED, requested_at=t("04-20 15:00"), decided_at=t("04-21 09:00"),
                             old_due_at=wo9.report_due_at))
    b.callback(c9, "no_answer", "04-23 09:00")
    b.callback(c9, "busy", "04-23 11:00")

    # C11 escalated 04-20, back office due 04-23 17:30, never dispatched: missed.
    b.case(C.CONSULTATION, K.SMS, "policy_consultation", "", "04-20 09:00", status=CaseStatus.PENDING_BACK_OFFICE,
           dispatch_due_at=b.dl.back_office_dispatch_due(t("04-20 09:00")).at)
    s.flush()
    ids.update(c1=c1.id, c2=c2.id, c3=c3.id, c4=c4.id, c8=c8.id, c9=c9.id, c10=c10.id, wo3a=wo3b.id - 1)
    return ids


@pytest.fixture
def units(sessions, domain):
    """Only the member units (the `seeded` users are not needed here)."""
    with session_scope(sessions) as s:
        seed_units(s, domain.city, domain.clock())
    return sessions


@pytest.fixture
def april(units, domain):
    with session_scope(units) as s:
        ids = build_cases(s, domain)
    return units, ids


# ---- cases -----------------------------------------------------------------------------------

def test_r3_1_intake_counts_by_reason_kind_category_channel_and_unit_r7_3c_only_in_totals(april):
    """R3.1, R7.2, R7.3c: received in April: C1 C2 C3 C4 C5 C6 C7 C8 C9 C11 = 10; rejected C6, C7;
    accepted 10 - 2 = 8, one of them (C8) confidential: it is in `accepted` and `confidential` and in no
    breakdown (the 7 others: consultation C1 C2 C5 C9 C11, complaint C3, suggestion C4)."""
    sessions, _ = april
    with sessions() as s:
        f = CaseFigures(s).intake(APRIL)
        assert (f.received, f.rejected, f.accepted, f.confidential) == (10, 2, 8, 1)
        assert f.rejected_by_reason == {"legal_proceedings": 1, "outside_jurisdiction": 1}
        assert f.by_kind == {"consultation": 5, "complaint": 1, "suggestion": 1}          # 7 = 8 - C8
        assert f.by_category == {"city_appearance": 2, "policy_consultation": 2, "water_supply": 3}
        assert f.by_channel == {"fax": 1, "landline": 3, "mobile": 1, "sms": 1, "web": 1}
        assert "discipline_economic" not in f.by_category
        # W: C1 C2 C3 (round 2) C9; U: C3 (returned) C4; D: only C8, so not listed.
        assert f.by_unit == {"urban_management": 2, "water_supply": 4}
        assert (f.direct_answer.numerator, f.direct_answer.denominator) == (1, 8)          # C5

        w = CaseFigures(s).intake(APRIL, unit="water_supply")
        assert (w.received, w.accepted, w.rejected, w.confidential) == (4, 4, 0, 0)
        assert w.by_kind == {"consultation": 3, "complaint": 1} and w.by_unit == {"water_supply": 4}
        d = CaseFigures(s).intake(APRIL, unit="discipline_commission")
        assert (d.received, d.accepted, d.by_kind, d.by_unit) == (0, 0, {}, {})


def test_r7_3_same_day_and_back_office_dispatch(april):
    """R7.3: first work order on the day of acceptance: C1 C2 C3 C8 C9 yes, C4 (accepted 04-03, first
    dispatched 04-07) no -> 5 / 6 (C5, C11 have no work order). Back office within 3 days, by the
    stored due: C4 (due 04-07 over Qingming, met), C3 (due 04-13, met), C11 (due 04-23, still
    waiting) -> 2 / 3."""
    sessions, ids = april
    with sessions() as s:
        f = CaseFigures(s)
        same = f.rate("dispatched_same_day", APRIL)
        assert (same.numerator, same.denominator) == (5, 6)
        assert f.rows("dispatched_same_day", APRIL, part="missed") == [ids["c4"]]
        back = f.rate("back_office_on_time", APRIL)
        assert (back.numerator, back.denominator, back.rate) == (2, 3, 2 / 3)
        # U had C3 and C4 (both on time); C8's same-day dispatch is in the totals only.
        assert f.rate("back_office_on_time", APRIL, "urban_management").numerator == 2
        assert (f.rate("dispatched_same_day", APRIL, "urban_management").numerator,
                f.rate("dispatched_same_day", APRIL, "urban_management").denominator) == (1, 2)
        assert f.rate("dispatched_same_day", APRIL, "discipline_commission").denominator == 0


def test_satisfaction_first_time_closed_callback_reach_and_repeat_callers(april):
    """满意率, 一次办结率 (R7.5), callback reach (R7.4), repeat callers; R7.3c in totals only."""
    sessions, ids = april
    with sessions() as s:
        f = CaseFigures(s)
        # Closed in April: C10 C1 C2 C3 C5 C8 C9 = 7 (C6, C7 rejected, C13 February).
        # Rated: satisfied C10 C1 C3 C5, basically C2, unsatisfied C9 -> 满意率 (4 + 1) / 6.
        # First time: C10 C1 C2 (an extension is no second round) C5 C8 yes; C3 (return, round 2)
        # and C9 (provisional, unsatisfied) no -> 5 / 7.
        c = f.closing(APRIL)
        assert (c.closed, c.closed_provisionally) == (7, 1)
        assert c.ratings == {"basically_satisfied": 1, "satisfied": 4, "unsatisfied": 1}
        assert (c.satisfaction.numerator, c.satisfaction.denominator) == (5, 6)
        assert (c.first_time_closed.numerator, c.first_time_closed.denominator) == (5, 7)
        assert sorted(f.rows("first_time_closed", APRIL, part="missed")) == sorted([ids["c3"], ids["c9"]])
        # W: C1 C2 C3 C9 -> satisfied C1 C3 + basically C2 = 3 / 4; first time C1 C2 = 2 / 4.
        w = f.closing(APRIL, "water_supply")
        assert (w.closed, w.satisfaction.numerator, w.satisfaction.denominator) == (4, 3, 4)
        assert (w.first_time_closed.numerator, w.first_time_closed.denominator) == (2, 4)
        # U: C10, C3 -> 2 / 2 satisfied, first time 1 / 2 (C10). D: C8 never counts for it.
        u = f.closing(APRIL, "urban_management")
        assert (u.satisfaction.numerator, u.satisfaction.denominator) == (2, 2)
        assert (u.first_time_closed.numerator, u.first_time_closed.denominator) == (1, 2)
        d = f.closing(APRIL, "discipline_commission")
        assert (d.closed, d.satisfaction.denominator, d.satisfaction.rate) == (0, 0, None)

        # Callback attempts finished in April: C10 C1 C2 C3 C9; reached (done) C10 C1 C2 C3; C9 only
        # no answer and busy (its rating came from an operator's call) -> 4 / 5; W: C1 C2 C3 C9 -> 3 / 4.
        assert (f.rate("callback_reach", APRIL).numerator, f.rate("callback_reach", APRIL).denominator) == (4, 5)
        assert f.rows("callback_reach", APRIL, part="missed") == [ids["c9"]]
        assert f.rate("callback_reach", APRIL, "water_supply").rate == 3 / 4

        # Accepted in April with a number and a category: C1 C2 C3 C4 C8 C9 = 6. Repeats: C2 (C1,
        # 2 days before), C3 (C10, 13 days before); C9's earlier C13 is 69 days old (> 30); C4's
        # number called again later (C6), not before -> 2 / 6.
        rep = f.rate("repeat_caller", APRIL)
        assert (rep.numerator, rep.denominator) == (2, 6)
        assert sorted(f.rows("repeat_caller", APRIL, part="numerator")) == sorted([ids["c2"], ids["c3"]])
        # A 70-day window reaches C13: C9 is a repeat too -> 3 / 6.
        assert CaseFigures(s, Thresholds(repeat_within_days=70)).rate("repeat_caller", APRIL).numerator == 3
        # W: C1 C2 C3 C9 -> 2 / 4.
        assert f.rate("repeat_caller", APRIL, "water_supply").rate == 2 / 4


# ---- work orders (what a unit is assessed on) ------------------------------------------------

def test_r8_2_r8_3_response_on_time_returns_extensions_urges_by_unit(april):
    """R8.2 响应率, R8.3 按时办结率 against the approved extended deadline (R8.5), returns (R8.6),
    urges (R7.7); R7.3c work orders in the totals only."""
    sessions, ids = april
    with sessions() as s:
        f = WorkOrderFigures(s)
        total = f.summary(APRIL)
        # Notify due in April: WO1 met, WO2 late, WO4 met, WO3b met, WO8 late, WO9 met (WO3a was
        # returned before notifying: not due; WO10 was due in March) -> 4 / 6.
        assert (total.response.numerator, total.response.denominator) == (4, 6)
        # Report due in April: WO10 (04-01) late, WO1 met, WO2 met (by its extended 04-16; by the
        # original 04-13 it would be late), WO4 (04-21) never reported, WO3b, WO8, WO9 met -> 5 / 7.
        assert (total.on_time.numerator, total.on_time.denominator) == (5, 7)
        # Dispatched in April: WO1 WO2 WO4 WO3a WO3b WO8 WO9 = 7; returned WO3a; extended WO2;
        # urged WO2 WO4 WO8 -> 1 / 7, 1 / 7, 3 / 7; urge notices 04-13, 04-20, 04-21, 04-22 = 4.
        assert total.dispatched == 7
        assert (total.returned.numerator, total.extended.numerator, total.urged.numerator) == (1, 1, 3)
        assert (total.urges, total.extensions_approved, total.extensions_denied) == (4, 1, 1)
        assert f.rows("returned", APRIL, part="numerator") == [ids["wo3a"]]

        by_unit = f.by_unit(APRIL)
        assert set(by_unit) == {"urban_management", "water_supply"}  # D had only R7.3c work
        w = by_unit["water_supply"]
        # W: notify WO1 WO2(late) WO3b WO9 -> 3 / 4; report WO1 WO2 WO3b WO9 -> 4 / 4;
        # dispatched 4, none returned, WO2 extended and urged once; WO9's extension denied.
        assert (w.response.numerator, w.response.denominator) == (3, 4)
        assert (w.on_time.numerator, w.on_time.denominator) == (4, 4)
        assert (w.dispatched, w.returned.numerator, w.extended.numerator, w.urged.numerator, w.urges) == (4, 0, 1, 1, 1)
        assert (w.extensions_approved, w.extensions_denied) == (1, 1)
        u = by_unit["urban_management"]
        # U: notify WO4 -> 1 / 1 (WO3a returned first); report WO10 late, WO4 missing -> 0 / 2;
        # dispatched WO4 WO3a = 2, returned 1, urged WO4 (two notices).
        assert (u.response.numerator, u.response.denominator) == (1, 1)
        assert (u.on_time.numerator, u.on_time.denominator, u.on_time.rate) == (0, 2, 0.0)
        assert (u.dispatched, u.returned.numerator, u.urged.numerator, u.urges) == (2, 1, 1, 2)
        d = f.summary(APRIL, "discipline_commission")
        assert (d.dispatched, d.response.denominator, d.on_time.denominator, d.urges) == (0, 0, 0, 0)

        # April so far, on 04-10 00:00: notify due WO1 (met), WO2 (late), WO4 (met) -> 2 / 3; report
        # due WO10 (late) and WO1 (met) -> 1 / 2 (WO2's extended 04-16 is not due yet, not missed).
        so_far = f.summary(Period(APRIL.since, t("04-10 00:00")))
        assert (so_far.response.numerator, so_far.response.denominator) == (2, 3)
        assert (so_far.on_time.numerator, so_far.on_time.denominator) == (1, 2)


# ---- calls -----------------------------------------------------------------------------------

def _call(s, uid, started, *, outcome="queued", purpose="hotline", direction="inbound", events=()):
    """A call as the voice menu and the AMI call log write it (ticketing.calls)."""
    call_id = call_log.open_call(s, uniqueid=uid, started_at=t(started), purpose=purpose, direction=direction,
                                 caller_number="13900000009")
    call_log.finish_call(s, call_id, outcome=outcome, ended_at=t(started))
    row = s.get(Call, call_id)
    s.refresh(row)
    for kind, at, data, operator_id in events:
        call_log.add_event(s, call_id, kind=kind, at=t(at), dedup_key=f"ami:{kind}:{uid}:{at}", data=data)
        call_log.apply_event(row, kind, at=t(at), uniqueid=uid, operator_id=operator_id)
    s.flush()
    return call_id


def build_calls(s, domain) -> tuple[int, int]:
    """The hand-built April calls (k1 .. k12) the call figures' tests read; returns op1, op2."""
    op1, op2 = (create_user(s, username=n, password=PASSWORD, role="front_desk", now=domain.clock()).id
                for n in ("op1", "op2"))

    def answered(at_connect, hold, operator, ext, talk=None):
        evs = [("operator_connected", at_connect, {"holdtime": hold, "operator": ext}, operator)]
        if talk is not None:
            evs.append(("operator_completed", at_connect, {"holdtime": hold, "talktime": talk}, None))
        return evs

    _call(s, "k1", "04-01 09:00", events=[("queued", "04-01 09:00:30", {}, None),
                                          *answered("04-01 09:00:40", 10, op1, "1001", 120)])
    _call(s, "k2", "04-01 09:10", events=[("queued", "04-01 09:10:20", {}, None),
                                          *answered("04-01 09:10:35", 15, op2, "1002", 60)])
    _call(s, "k3", "04-01 10:05", events=[("queued", "04-01 10:05:10", {}, None),
                                          *answered("04-01 10:05:50", 40, op1, "1001", 300)])
    _call(s, "k4", "04-01 10:20", events=[("queued", "04-01 10:20:10", {}, None),
                                          ("queue_abandoned", "04-01 10:20:13", {}, None)])
    _call(s, "k5", "04-01 10:30", events=[("queued", "04-01 10:30:10", {}, None),
                                          ("queue_abandoned", "04-01 10:31:10", {}, None)])
    # k6: answered by an extension no user has; its AgentComplete was never logged.
    _call(s, "k6", "04-01 10:40", events=[("queued", "04-01 10:40:05", {}, None),
                                          *answered("04-01 10:40:13", 8, None, "1003")])
    _call(s, "k7", "04-01 11:00", outcome="self_served")
    _call(s, "k8", "04-01 21:00", outcome="message_left")
    _call(s, "k9", "04-01 11:30", outcome="abandoned")                # hung up in the menu
    _call(s, "k10", "04-01 11:35", outcome="answered", purpose="callback", direction="outbound")
    _call(s, "k11", "03-31 23:59:30", events=[("queued", "03-31 23:59:50", {}, None)])  # March
    _call(s, "k12", "04-01 11:40", events=[("queued", "04-01 11:40:10", {}, None)])     # no end seen
    return op1, op2


def test_call_figures_offered_answered_15s_abandoned_wait_talk_menu(sessions, domain):
    """GB/T 33358 接通率 and 15 s figure, 放弃率, wait and talk, self-served, after-hours messages."""
    with session_scope(sessions) as s:
        op1, op2 = build_calls(s, domain)
    with sessions() as s:
        check_call_figures(s, domain, CallFigures(s), op1, op2)


def check_call_figures(s, domain, f, op1, op2, *, use_rollup: bool = True) -> None:
    """The hand-worked figures of `build_calls`, read by `f` (raw, or from the daily rollup)."""
    q = f.queue(APRIL)
    # Offered (queued in April): k1 k2 k3 k4 k5 k6 k12 = 7; answered k1 k2 k3 k6 -> 4 / 7;
    # within 15 s: k1 (10 s) k2 (15 s) k6 (8 s) -> 3 / 7; abandoned k4 (3 s) k5 (60 s) -> 2 / 7,
    # within the first 5 s: k4 -> 1 / 7.
    assert (q.offered, q.answered, q.abandoned) == (7, 4, 2)
    assert (q.answer_rate.numerator, q.answer_rate.denominator) == (4, 7)
    assert (q.answered_within.numerator, q.abandon_rate.numerator, q.abandoned_short.numerator) == (3, 2, 1)
    # Wait of answered: 8 10 15 40 -> mean 73 / 4 = 18.25, p90 = the 4th of 4 (ceil(0.9 * 4)) = 40.
    assert (q.wait.count, q.wait.average, q.wait.p90) == (4, 18.25, 40)
    # Abandoned after 3 and 60 s -> mean 31.5, p90 = 2nd of 2 = 60.
    assert (q.abandoned_wait.average, q.abandoned_wait.p90) == (31.5, 60)
    # Talk recorded for k1 120, k2 60, k3 300 (k6 none) -> mean 160, p90 = 3rd of 3 = 300.
    assert (q.talk.count, q.talk.average, q.talk.p90) == (3, 160, 300)
    # A 45 s threshold takes k3 (40 s) too: 4 / 7.
    wider = CallFigures(s, Thresholds.for_policy(domain.policy, answer_within_s=45), use_rollup=use_rollup)
    assert wider.queue(APRIL).answered_within.numerator == 4

    hours = f.by_hour(APRIL)  # local hour of joining the queue
    assert {h: (x.offered, x.answered, x.abandoned) for h, x in hours.items()} == {
        9: (2, 2, 0), 10: (4, 2, 2), 11: (1, 0, 0)}
    ops = f.by_operator(APRIL)
    # op1: k1 (10 s) k3 (40 s) -> 1 of 2 within 15 s, mean wait 25; op2: k2; k6 by extension.
    assert set(ops) == {str(op1), str(op2), "ext:1003"}
    assert (ops[str(op1)].answered, ops[str(op1)].answered_within.numerator, ops[str(op1)].wait.average) == (2, 1, 25)
    assert ops[str(op2)].talk.average == 60

    # Inbound hotline calls started in April: k1-k9, k12 = 10 (k10 is a callback, k11 March);
    # self-served k7 -> 1 / 10; after-hours message k8.
    m = f.menu(APRIL)
    assert (m.inbound, m.self_served.numerator, m.self_served.denominator, m.after_hours_messages) == (10, 1, 10, 1)
