"""The callback survey's bookkeeping (R7.4, R7.5) without a PBX: who is called, when, how often,
and what a rating does to the case. The live calls are in tests/live/test_callback_live.py."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import select

from callback import attempts as A
from tests.live.callback_helpers import BACK_OFFICE, reported_case
from ticketing.audit import SYSTEM, Actor
from ticketing.domain import Domain
from ticketing.enums import CaseKind, CaseStatus, Channel, Satisfaction
from ticketing.errors import Forbidden
from ticketing.models import CallbackAttempt, Case
from ticketing.store import session_scope


def _with_callback_policy(domain: Domain, **kw) -> Domain:
    policy = dataclasses.replace(domain.policy, callback=dataclasses.replace(domain.policy.callback, **kw))
    return Domain(policy=policy, calendar=domain.calendar, city=domain.city, clock=domain.clock)


def _attempts(sessions, number: str) -> list[tuple[int, str, object]]:
    with session_scope(sessions) as s:
        case_id = s.execute(select(Case.id).where(Case.number == number)).scalar_one()
        return [(a.attempt_no, a.state, a.scheduled_for) for a in s.execute(
            select(CallbackAttempt).where(CallbackAttempt.case_id == case_id).order_by(CallbackAttempt.attempt_no)).scalars()]


def _case(sessions, number: str) -> Case:
    with session_scope(sessions) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        s.expunge(case)
        return case


def _plan_and_claim(sessions, domain, limit=10) -> list[A.Claimed]:
    with session_scope(sessions) as s:
        A.plan_due(s, domain)
    with session_scope(sessions) as s:
        return A.claim(s, domain, limit)


def test_r7_4_r7_3c_only_reported_cases_needing_a_callback_are_called(seeded, domain):
    sessions = seeded
    due = reported_case(sessions, domain, "13800000001")
    # R7.3c: a report on an official's economic problem, answered by the discipline commission
    secret = reported_case(sessions, domain, "13800000002", unit="discipline_commission",
                           kind=CaseKind.COMPLAINT, category_code="discipline_economic")
    assert _case(sessions, secret).status == CaseStatus.REPORTED
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        # R7.4: a direct answer is rated during the call
        direct = wf.accept(BACK_OFFICE, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE, title="咨询",
                           description="办事时间", citizen_phone="13800000003")
        wf.answer_directly(BACK_OFFICE, direct, answer="工作日9点至17点", satisfaction="satisfied")
        # still with the unit: not yet
        open_case = wf.accept(SYSTEM, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE, title="咨询",
                              description="水压低", citizen_phone="13800000004")
        wf.dispatch(BACK_OFFICE, open_case, units=["water_supply"])
    claimed = _plan_and_claim(sessions, domain)
    assert [c.case_number for c in claimed] == [due]
    assert claimed[0].key == f"cb-{due}-1" and claimed[0].phone == "13800000001"
    # claimed once: a second claim finds nothing, planning adds nothing while the attempt is open
    assert _plan_and_claim(sessions, domain) == []
    assert len(_attempts(sessions, due)) == 1


def test_r7_4_calls_only_within_calling_hours_and_days(seeded, domain, clock):
    sessions = seeded
    clock.set("2026-09-30T21:00:00")  # Wednesday evening before National Day, after 20:00
    working_days = _with_callback_policy(domain, calling_days="working_days")
    number = reported_case(sessions, working_days, "13800000011")
    assert _plan_and_claim(sessions, working_days) == []
    ((_, state, when),) = _attempts(sessions, number)
    # T1: 10-01..10-07 are holidays; the next calling slot is Thursday 10-08 09:00
    assert state == A.SCHEDULED
    assert when.astimezone(domain.calendar.tz).isoformat() == "2026-10-08T09:00:00+08:00"
    clock.set("2026-10-03T10:00:00")  # a holiday Saturday: no calls
    assert _plan_and_claim(sessions, working_days) == []
    clock.set("2026-10-08T09:00:00")
    assert [c.case_number for c in _plan_and_claim(sessions, working_days)] == [number]


def test_r7_4_concurrency_cap_limits_calls_in_flight(seeded, domain):
    sessions = seeded
    for i in range(6):
        reported_case(sessions, domain, f"1380000002{i}")
    cap = domain.policy.callback.concurrency  # 4 in config/policy.yaml
    with session_scope(sessions) as s:
        A.plan_due(s, domain)
    with session_scope(sessions) as s:
        free = cap - A.in_flight_count(s)
        first = A.claim(s, domain, free)
    with session_scope(sessions) as s:
        assert A.in_flight_count(s) == cap
        assert A.claim(s, domain, cap - A.in_flight_count(s)) == []
    assert len(first) == cap


def test_r7_4_no_answer_busy_retry_with_backoff_then_manual_list(seeded, domain, clock):
    sessions = seeded
    domain = _with_callback_policy(domain, max_attempts=3, retry_backoff_minutes=(30, 120))
    number = reported_case(sessions, domain, "13800000031")
    t0 = clock()
    outcomes = [A.NO_ANSWER, A.BUSY, A.FAILED]
    for i, outcome in enumerate(outcomes):
        (c,) = _plan_and_claim(sessions, domain)
        with session_scope(sessions) as s:
            verdict = A.record_unsuccessful(s, domain, c.attempt_id, outcome, log_call=True)
        if i < 2:
            assert verdict == "retry"
            assert _plan_and_claim(sessions, domain) == []  # not before the backoff
            clock.now = _attempts(sessions, number)[-1][2]
        else:
            assert verdict == "manual"
    rows = _attempts(sessions, number)
    assert [r[1] for r in rows] == [A.NO_ANSWER, A.BUSY, A.FAILED]
    assert rows[1][2] == t0 + timedelta(minutes=30)
    assert rows[2][2] == rows[1][2] + timedelta(minutes=120)
    case = _case(sessions, number)
    assert case.status == CaseStatus.REPORTED and case.callback_manual
    with session_scope(sessions) as s:
        assert [c.number for c in A.manual_list(s)] == [number]
        assert A.plan_due(s, domain) == 0  # the manual list is the front desk's now


@pytest.mark.parametrize("value, status, closed", [
    ("satisfied", CaseStatus.CLOSED, True),
    ("basically_satisfied", CaseStatus.CLOSED, True),
    ("unsatisfied", CaseStatus.UNSATISFIED, False),
])
def test_r7_5_survey_answer_closes_or_goes_to_the_back_office(seeded, domain, value, status, closed):
    sessions = seeded
    number = reported_case(sessions, domain, "13800000041")
    (c,) = _plan_and_claim(sessions, domain)
    with session_scope(sessions) as s:
        A.mark_answered(s, domain, c.attempt_id)
    with session_scope(sessions) as s:
        A.record_survey_answer(s, domain, key=c.key, case_number=number, value=value)
    with session_scope(sessions) as s:
        # the call ends after the rating: nothing more happens to the attempt
        assert A.finish_survey(s, domain, key=c.key, satisfaction=value) == "done"
    case = _case(sessions, number)
    assert case.status == status and case.satisfaction == Satisfaction(value)
    assert case.satisfaction_source == "callback" and case.callback_met is True
    assert (case.closed_at is not None) == closed
    assert _attempts(sessions, number)[0][1] == A.DONE


def test_r7_4_survey_without_a_key_is_not_rated_and_retried(seeded, domain):
    sessions = seeded
    number = reported_case(sessions, domain, "13800000051")
    (c,) = _plan_and_claim(sessions, domain)
    with session_scope(sessions) as s:
        assert A.finish_survey(s, domain, key=c.key, satisfaction="not_rated") == "retry"
    rows = _attempts(sessions, number)
    assert [r[1] for r in rows] == [A.NOT_RATED, A.SCHEDULED]
    assert _case(sessions, number).satisfaction is None


def test_r7_5_system_closes_only_cases_rated_in_the_callback(seeded, domain):
    sessions = seeded
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        case = wf.accept(BACK_OFFICE, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE, title="咨询",
                         description="办事时间", citizen_phone="13800000061")
        wf.answer_directly(BACK_OFFICE, case, answer="工作日9点至17点", satisfaction="satisfied")
        with pytest.raises(Forbidden) as err:
            wf.close(Actor(user_id=None, name="callback", role="system"), case)
        assert err.value.rule == "R7.5"


def test_r7_4_case_without_phone_goes_to_the_manual_list(seeded, domain):
    sessions = seeded
    number = reported_case(sessions, domain, "")
    assert _plan_and_claim(sessions, domain) == []
    assert _case(sessions, number).callback_manual
