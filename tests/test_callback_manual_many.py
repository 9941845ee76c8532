"""`Workflow.mark_callback_manual_many` (R7.4): the callback writer puts the cases of a batch on the
manual-callback list with one read and one UPDATE; each case must end exactly as after
`mark_callback_manual` — flag, version bump, one audit event in the chain — on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from callback import attempts as A
from tests.live.callback_helpers import reported_case
from ticketing import audit
from ticketing.errors import DomainError
from ticketing.models import AuditEvent, Case
from ticketing.store import session_scope


def _case(s, number: str) -> Case:
    return s.execute(select(Case).where(Case.number == number)).scalar_one()


def _events(s, case_id: int) -> list[tuple]:
    return [tuple(r) for r in s.execute(
        select(AuditEvent.action, AuditEvent.actor_name, AuditEvent.actor_role, AuditEvent.data)
        .where(AuditEvent.case_id == case_id).order_by(AuditEvent.id)).all()]


def test_r7_4_batch_marks_each_case_like_one_at_a_time(seeded, domain):
    one = [reported_case(seeded, domain, f"2390000000{i}") for i in range(3)]
    many = [reported_case(seeded, domain, f"2391000000{i}") for i in range(3)]
    with session_scope(seeded) as s:  # R7.3c: a confidential case's reason stays out of the log
        s.execute(update(Case).where(Case.number.in_([one[2], many[2]])).values(confidential=True))
    reasons = ["1 automatic callback attempts without a rating (last: busy)", "no answer", "failed"]
    with session_scope(seeded) as s:
        wf = domain.workflow(s)
        for number, reason in zip(one, reasons):
            wf.mark_callback_manual(A.CALLBACK_ACTOR, _case(s, number), reason=reason)
    with session_scope(seeded) as s:
        ids = {number: s.execute(select(Case.id).where(Case.number == number)).scalar_one() for number in many}
        before = {number: s.execute(select(Case.version).where(Case.id == ids[number])).scalar_one() for number in many}
    with session_scope(seeded) as s:
        marked = domain.workflow(s).mark_callback_manual_many(
            A.CALLBACK_ACTOR, {ids[number]: reason for number, reason in zip(reversed(many), reversed(reasons))})
    assert marked == sorted(ids.values())
    with session_scope(seeded) as s:
        for a, b in zip(one, many):
            ca, cb = _case(s, a), _case(s, b)
            assert cb.callback_manual is True and cb.version == before[b] + 1
            assert ca.version == cb.version and cb.updated_at == domain.clock()
            assert _events(s, ca.id) == _events(s, cb.id)  # the same event history, last one the mark
        assert _events(s, _case(s, many[0]).id)[-1][3] == {"reason": reasons[0]}
        assert _events(s, _case(s, many[2]).id)[-1][3] == {}
        # events of the batch in case id order, one each
        tail = s.execute(select(AuditEvent.case_id).order_by(AuditEvent.id.desc()).limit(3)).scalars().all()
        assert list(reversed(tail)) == sorted(ids.values())
        assert {c.number for c in A.manual_list(s)} == set(one) | set(many)
        assert audit.verify(s).ok


def test_r7_4_a_case_not_reported_refuses_the_whole_batch(seeded, domain):
    numbers = [reported_case(seeded, domain, f"2392000000{i}") for i in range(2)]
    with session_scope(seeded) as s:
        s.execute(update(Case).where(Case.number == numbers[1]).values(status="closed"))
        ids = [_case(s, n).id for n in numbers]
    with pytest.raises(DomainError) as err, session_scope(seeded) as s:
        domain.workflow(s).mark_callback_manual_many(A.CALLBACK_ACTOR, {i: "busy" for i in ids})
    assert err.value.rule == "R7.4"
    with session_scope(seeded) as s:
        assert not _case(s, numbers[0]).callback_manual
        assert audit.verify(s).ok


def test_the_sessions_case_object_follows_the_batch_update(seeded, domain):
    """A case the session already holds: its version, flag and later ORM changes stay right (no
    StaleDataError at the next flush, the version stepped once per change)."""
    number = reported_case(seeded, domain, "23930000001")
    with session_scope(seeded) as s:
        wf = domain.workflow(s)
        case = wf.get_case(number)
        seen = case.version
        wf.mark_callback_manual_many(A.CALLBACK_ACTOR, {case.id: "busy"})
        assert case.callback_manual is True and case.version == seen + 1
        case.title = "水费咨询（回访转人工）"
        s.flush()
        assert case.version == seen + 2
    with session_scope(seeded) as s:
        case = _case(s, number)
        assert (case.version, case.callback_manual, case.title) == (seen + 2, True, "水费咨询（回访转人工）")
        assert audit.verify(s).ok
