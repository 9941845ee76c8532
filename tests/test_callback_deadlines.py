"""Deadline keeping (R7.7 with R8.2, R8.3, R7.3, R7.5): the sweep urges once per threshold, across
working days. The fixture clock starts Monday 2026-03-02 09:00 Shanghai."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from callback.deadlines import sweep_deadlines
from tests.live.callback_helpers import BACK_OFFICE, reported_case
from ticketing.audit import SYSTEM, Actor
from ticketing.enums import CaseKind, Channel
from ticketing.models import AuditEvent, Case, MemberUnit, UnitNotification, WorkOrder
from ticketing.store import session_scope

FRONT_DESK = Actor(user_id=None, name="op-test", role="front_desk")


def _sweep(sessions, domain):
    with session_scope(sessions) as s:
        return sweep_deadlines(s, domain)


def _dispatched(sessions, domain) -> tuple[int, Actor]:
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        case = wf.accept(SYSTEM, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE, title="水压低",
                         description="三楼以上没水", citizen_phone="13800000001")
        (wo,) = wf.dispatch(BACK_OFFICE, case, units=["water_supply"])
        unit_id = s.execute(select(MemberUnit.id).where(MemberUnit.code == "water_supply")).scalar_one()
        return wo.id, Actor(user_id=None, name="water", role="unit_staff", unit_id=unit_id)


def _notices(sessions, wo_id: int) -> list[UnitNotification]:
    with session_scope(sessions) as s:
        rows = list(s.execute(select(UnitNotification).where(UnitNotification.work_order_id == wo_id)
                              .order_by(UnitNotification.id)).scalars())
        s.expunge_all()
        return rows


def test_r7_7_r8_2_r8_3_units_are_urged_once_per_threshold_across_working_days(seeded, domain, clock):
    sessions = seeded
    wo_id, unit = _dispatched(sessions, domain)
    assert _sweep(sessions, domain).total == 0  # Monday morning: nothing near

    clock.set("2026-03-04T14:00:00")  # R8.2 notify due Wed 17:30: within 4 hours
    assert _sweep(sessions, domain).urged == {"notify_soon": 1}
    assert _sweep(sessions, domain).total == 0, "once per threshold"

    clock.set("2026-03-05T09:00:00")  # past it
    assert _sweep(sessions, domain).urged == {"notify_overdue": 1}
    assert _sweep(sessions, domain).total == 0

    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        wf.notify(unit, wf.get_work_order(wo_id), channel="phone")
    clock.set("2026-03-09T09:00:00")  # R8.3 report due Mon 03-09 17:30 (5 working days): within 1
    assert _sweep(sessions, domain).urged == {"report_soon": 1}
    clock.set("2026-03-10T09:00:00")
    assert _sweep(sessions, domain).urged == {"report_overdue": 1}
    assert _sweep(sessions, domain).total == 0

    notices = _notices(sessions, wo_id)
    assert len(notices) == 4 and all(n.kind == "urge" and n.unit_id == unit.unit_id for n in notices)
    assert all(n.recipient_name and n.recipient_phone for n in notices), "to the unit's duty staff (R5.3)"
    with session_scope(sessions) as s:
        wo = s.get(WorkOrder, wo_id)
        assert wo.urge_count == 4
        events = s.execute(select(AuditEvent.data).where(AuditEvent.work_order_id == wo_id,
                                                         AuditEvent.action == "urge")).scalars().all()
        assert [e["threshold"].split(":")[0] for e in events] == ["notify_soon", "notify_overdue", "report_soon",
                                                                  "report_overdue"]

    # R8.5: an approved extension moves the deadline; the new one is urged for again when passed
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        ext = wf.request_extension(unit, wf.get_work_order(wo_id), legal_basis="《信访条例》第三十三条", extra_working_days=2)
        wf.decide_extension(BACK_OFFICE, ext, approve=True)
    assert _sweep(sessions, domain).total == 0  # new deadline Wed 03-11 17:30 (Tue 09:00 now: not within 1 wd)
    clock.set("2026-03-12T09:00:00")
    assert _sweep(sessions, domain).urged == {"report_overdue": 1}


def test_r7_3_r7_5_center_deadlines_give_one_alert_each(seeded, domain, clock):
    sessions = seeded
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        waiting = wf.accept(SYSTEM, kind=CaseKind.SUGGESTION, channel=Channel.WEB, title="建议",
                            description="增设公交线路", citizen_phone="13800000002")
        wf.escalate(FRONT_DESK, waiting)  # R7.3: the back office dispatches within 3 days
        waiting_id = waiting.id
    reported = reported_case(sessions, domain, "13800000003")
    with session_scope(sessions) as s:
        close_due = s.execute(select(Case.close_due_at).where(Case.number == reported)).scalar_one()

    clock.set("2026-03-06T09:00:00")  # Friday: dispatch limit (Thu 17:30) passed
    assert _sweep(sessions, domain).alerts == {"dispatch_overdue": 1}
    assert _sweep(sessions, domain).total == 0

    clock.now = close_due + timedelta(hours=1)
    report = _sweep(sessions, domain)
    assert report.alerts == {"close_overdue": 1}, report
    with session_scope(sessions) as s:
        alerts = s.execute(select(AuditEvent).where(AuditEvent.action == "deadline_alert")).scalars().all()
        assert {(a.case_id, a.data["rule"]) for a in alerts} >= {(waiting_id, "R7.3")}
        assert any(a.data["rule"] == "R7.5" for a in alerts)
