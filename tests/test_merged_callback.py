"""The citizen of a merged case gets the callback of the surviving case (重复诉求并单, issue 13
item 7; R7.4): one survey call per distinct number linked to the surviving case, placed through
the same exactly-once attempt machinery (callback/attempts.py, callback/linked.py), and the rating
recorded per citizen. Store and scheduler level, on SQLite and PostgreSQL."""
from __future__ import annotations

import dataclasses

from sqlalchemy import select

from callback import attempts as A
from tests.live.callback_helpers import BACK_OFFICE
from ticketing.audit import SYSTEM, Actor
from ticketing.domain import Domain
from ticketing.enums import CaseKind, CaseStatus, Channel, Satisfaction
from ticketing.figures import CaseFigures, Period
from ticketing.models import AuditEvent, CallbackAttempt, Case, MemberUnit
from ticketing.store import session_scope

OWN = "13800000001"
NEIGHBOUR = "13900000002"


def _accept(wf, phone: str, title: str = "停水三天"):
    return wf.accept(SYSTEM, kind=CaseKind.COMPLAINT, channel=Channel.MOBILE, title=title,
                     description="人民路一带停水，无通知", citizen_phone=phone, location="人民路",
                     category_code="water_supply")


def _merged_family(sessions, domain, phones: list[str]) -> tuple[str, list[str]]:
    """A surviving case (number OWN) with a repeat from each of `phones` merged into it, then
    answered by the unit: its callback is due. Returns (survivor number, merged numbers)."""
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        survivor = _accept(wf, OWN)
        (wo,) = wf.dispatch(BACK_OFFICE, survivor, units=["water_supply"])
        merged = []
        for phone in phones:
            dup = _accept(wf, phone, title="又停水了")
            wf.merge(BACK_OFFICE, dup, survivor, expected_version=dup.version)
            merged.append(dup.number)
        unit_id = s.execute(select(MemberUnit.id).where(MemberUnit.code == "water_supply")).scalar_one()
        staff = Actor(user_id=None, name="unit-staff", role="unit_staff", unit_id=unit_id)
        wf.receive(staff, wo)
        wf.notify(staff, wo, channel="phone")
        wf.report(staff, wo, answer="管道抢修完毕，已恢复供水")
        return survivor.number, merged


def _plan_and_claim(sessions, domain) -> list[A.Claimed]:
    with session_scope(sessions) as s:
        A.plan_due(s, domain)
    with session_scope(sessions) as s:
        return A.claim(s, domain, 10)


def _case(sessions, number: str) -> Case:
    with session_scope(sessions) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        s.expunge(case)
        return case


def test_r7_4_every_distinct_number_linked_by_a_merge_gets_one_survey_call(seeded, domain):
    sessions = seeded
    # the same caller again, a neighbour, the neighbour's number written another way, no number
    survivor, (same, neighbour, neighbour_again, nobody) = _merged_family(
        sessions, domain, [OWN, NEIGHBOUR, "139-0000-0002", ""])
    claimed = _plan_and_claim(sessions, domain)
    assert sorted((c.case_number, c.phone) for c in claimed) == sorted([(survivor, OWN), (neighbour, NEIGHBOUR)])
    # exactly once: planning again adds nothing while those calls are under way or done
    with session_scope(sessions) as s:
        assert A.plan_due(s, domain) == 0
        assert set(s.execute(select(CallbackAttempt.idempotency_key)).scalars()) == {
            f"cb-{survivor}-1", f"cb-{neighbour}-1"}
    keys = {c.case_number: c.key for c in claimed}

    # the neighbour rates first: recorded on their own (merged) case and on the survivor's record;
    # the surviving case still waits for its own citizen's rating
    with session_scope(sessions) as s:
        A.record_survey_answer(s, domain, key=keys[neighbour], case_number=neighbour, value="unsatisfied")
    assert _case(sessions, survivor).status == CaseStatus.REPORTED
    rated = _case(sessions, neighbour)
    assert (rated.status, rated.satisfaction, rated.satisfaction_source) == (
        CaseStatus.CLOSED, Satisfaction.UNSATISFIED, "callback")
    with session_scope(sessions) as s:
        A.record_survey_answer(s, domain, key=keys[survivor], case_number=survivor, value="satisfied")
        events = {(e.action, e.data.get("duplicate") or e.data.get("survivor"), e.data.get("satisfaction"))
                  for e in s.execute(select(AuditEvent).where(AuditEvent.action.in_(["callback", "merged_callback"])))
                  .scalars()}
        states = dict(s.execute(select(CallbackAttempt.idempotency_key, CallbackAttempt.state)).all())
    assert _case(sessions, survivor).status == CaseStatus.CLOSED
    assert events == {("merged_callback", neighbour, "unsatisfied"), ("callback", survivor, "unsatisfied"),
                      ("callback", None, "satisfied")}
    assert set(states.values()) == {A.DONE}
    for number in (same, neighbour_again, nobody):
        assert _case(sessions, number).satisfaction is None  # not called: their number was called already / none

    # counts stay honest: the merged citizen's rating is in no satisfaction or callback figure
    with session_scope(sessions) as s:
        figures = CaseFigures(s)
        period = Period.month(2026, 3)
        assert figures.rate("satisfaction", period).denominator == 1
        assert figures.rate("satisfaction", period).numerator == 1
        assert figures.rate("callback_reach", period).denominator == 1


def test_r7_4_a_linked_citizen_is_tried_again_after_the_surviving_case_closed_then_given_up(seeded, domain, clock):
    sessions = seeded
    policy = dataclasses.replace(domain.policy, callback=dataclasses.replace(
        domain.policy.callback, max_attempts=2, retry_backoff_minutes=(30,)))
    domain = Domain(policy=policy, calendar=domain.calendar, city=domain.city, clock=domain.clock)
    survivor, (neighbour,) = _merged_family(sessions, domain, [NEIGHBOUR])
    claimed = {c.case_number: c for c in _plan_and_claim(sessions, domain)}
    with session_scope(sessions) as s:
        A.record_survey_answer(s, domain, key=claimed[survivor].key, case_number=survivor, value="satisfied")
        assert A.record_unsuccessful(s, domain, claimed[neighbour].attempt_id, A.NO_ANSWER) == "retry"
    assert _case(sessions, survivor).status == CaseStatus.CLOSED
    clock.advance(minutes=31)
    (again,) = _plan_and_claim(sessions, domain)  # not cancelled although the surviving case is closed
    assert (again.case_number, again.phone, again.key) == (neighbour, NEIGHBOUR, f"cb-{neighbour}-2")
    with session_scope(sessions) as s:
        assert A.record_unsuccessful(s, domain, again.attempt_id, A.BUSY) == "given_up"
    clock.advance(hours=3)
    assert _plan_and_claim(sessions, domain) == []
    assert _case(sessions, neighbour).callback_manual is False


def test_r7_4_no_linked_call_when_the_surviving_case_gets_no_callback(seeded, domain):
    """Linked citizens get the surviving case's callback, nothing of their own: a merged case whose
    survivor is still with its unit is not called."""
    sessions = seeded
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        survivor = _accept(wf, OWN)
        wf.dispatch(BACK_OFFICE, survivor, units=["water_supply"])
        dup = _accept(wf, NEIGHBOUR)
        wf.merge(BACK_OFFICE, dup, survivor, expected_version=dup.version)
    assert _plan_and_claim(sessions, domain) == []
