"""漏接回拨 by the scheduler (国办函〔2025〕66号; issue 14 item 4): within service hours a free
operator's phone rings first, then the citizen's; one callback per number however often it gave up;
a number that got through meanwhile is taken off; a callback that misses the caller is tried again
after `retry_minutes`, at most `max_tries` times; a killed scheduler's call is settled, never placed
twice. Against an in-memory PBX (tests/missed_fake_pbx.py); on the real Asterisk:
tests/live/test_missed_callback_live.py. Clock: 2026-03-02 10:00 Shanghai (SQLite and PostgreSQL)."""
from __future__ import annotations

import asyncio
import dataclasses

from sqlalchemy import select, update

from callback import missed as M
from callback.missed_runner import MissedCallbackRunner, MissedOptions
from tests.helpers import ok
from tests.missed_fake_pbx import FakeMissedPbx
from tests.test_missed_calls import _queued
from ticketing.domain import Domain
from ticketing.missed_call_model import MissedCallback, MissedCallbackAttempt
from ticketing.missed_calls import missed_calls
from ticketing.models import User
from ticketing.policy import WeeklyHours
from ticketing.store import session_scope

NUMBER = "13800000001"
OPTS = MissedOptions(settle_seconds=0, end_grace=0.05, check_seconds=0.05, operator_rest=0)


def _abandons(seeded, clock) -> None:
    clock.set("2026-03-02T10:00:00")
    with session_scope(seeded) as s:
        _queued(s, "a1", NUMBER, "09:00:00", left="09:00:30")        # gave up twice: one callback
        _queued(s, "a2", NUMBER, "09:20:00", left="09:20:08")
        _queued(s, "c1", "13800000003", "09:15:00", left="09:15:40")  # got through later: none
        _queued(s, "c2", "13800000003", "09:30:00", answered="09:30:03")
        s.execute(update(User).where(User.username == "op1").values(operator_extension="8001"))


def _attempts(seeded) -> list[tuple[str, str, str | None]]:
    with session_scope(seeded) as s:
        return [tuple(r) for r in s.execute(select(MissedCallbackAttempt.caller_number, MissedCallbackAttempt.state,
                                                   MissedCallbackAttempt.operator_extension)
                                            .order_by(MissedCallbackAttempt.id)).all()]


def _callbacks(seeded) -> list[tuple[str, bool, int | None]]:
    with session_scope(seeded) as s:
        return [tuple(r) for r in s.execute(select(MissedCallback.caller_number, MissedCallback.reached,
                                                   MissedCallback.called_by_id).order_by(MissedCallback.id)).all()]


def _on_list(seeded, domain) -> dict[str, int]:
    with session_scope(seeded) as s:
        return {m.number: m.tries for m in missed_calls(s, domain.clock(), domain.policy)}


async def test_operator_rings_first_then_the_citizen_once_per_number_and_the_number_leaves_the_list(seeded, domain,
                                                                                                    clock):
    _abandons(seeded, clock)
    pbx = FakeMissedPbx()
    runner = MissedCallbackRunner(domain, seeded, pbx, OPTS)
    await runner.drain(timeout=10, poll=0.01)
    await runner.stop()
    # the operator's phone is what is originated; the citizen is dialled by the dialplan once it answered
    assert [(op, number) for op, number, _chan in pbx.rings] == [("8001", NUMBER)]
    assert list(pbx.citizen_dials.values()) == [1]
    assert _attempts(seeded) == [(NUMBER, M.REACHED, "8001")]
    with session_scope(seeded) as s:
        op1 = s.execute(select(User.id).where(User.username == "op1")).scalar_one()
    assert _callbacks(seeded) == [(NUMBER, True, op1)]  # the operator who talked to the caller
    assert _on_list(seeded, domain) == {}
    assert not pbx.ledger  # settled: Asterisk's ledger entry went
    # the list has nobody left to plan for
    with session_scope(seeded) as s:
        assert M.plan(s, domain) == 0


async def test_a_missed_caller_not_reached_stays_on_the_list_and_is_tried_again_later_at_most_max_tries(
        seeded, domain, clock):
    _abandons(seeded, clock)
    pbx = FakeMissedPbx()
    pbx.citizen_status = "NOANSWER"
    runner = MissedCallbackRunner(domain, seeded, pbx, OPTS)
    await runner.drain(timeout=10, poll=0.01)
    assert _attempts(seeded) == [(NUMBER, M.NOT_REACHED, "8001")]
    assert _on_list(seeded, domain) == {NUMBER: 1}
    # not again before retry_minutes
    clock.advance(minutes=domain.policy.missed_calls.retry_minutes - 1)
    await runner.sweep()
    assert len(pbx.rings) == 1
    clock.advance(minutes=2)
    await runner.drain(timeout=10, poll=0.01)
    assert len(pbx.rings) == 2 == domain.policy.missed_calls.max_tries
    clock.advance(hours=2)
    await runner.drain(timeout=10, poll=0.01)
    await runner.stop()
    assert len(pbx.rings) == 2  # the tries are used up: the front desk's list alone
    assert _on_list(seeded, domain) == {NUMBER: 2}


async def test_an_operator_who_does_not_answer_means_the_citizen_was_not_dialled(seeded, domain, clock):
    _abandons(seeded, clock)
    pbx = FakeMissedPbx()
    pbx.operator_answers = False
    runner = MissedCallbackRunner(domain, seeded, pbx, OPTS)
    await runner.sweep()
    for _ in range(50):
        if _attempts(seeded)[0][1] == M.SCHEDULED:
            break
        await asyncio.sleep(0.01)
    assert _attempts(seeded) == [(NUMBER, M.SCHEDULED, None)]  # back, same key, for the next operator
    assert not pbx.citizen_dials and _callbacks(seeded) == []
    pbx.operator_answers = True
    await runner.drain(timeout=10, poll=0.01)
    await runner.stop()
    assert len({chan for _o, _n, chan in pbx.rings}) == 1  # the same key both times
    assert list(pbx.citizen_dials.values()) == [1]
    assert _attempts(seeded) == [(NUMBER, M.REACHED, "8001")]


async def test_a_caller_who_gets_through_meanwhile_is_taken_off_without_a_call(seeded, domain, clock):
    _abandons(seeded, clock)
    with session_scope(seeded) as s:
        assert M.plan(s, domain) == 1
        _queued(s, "a3", NUMBER, "09:50:00", answered="09:50:04")
    pbx = FakeMissedPbx()
    runner = MissedCallbackRunner(domain, seeded, pbx, OPTS)
    await runner.drain(timeout=10, poll=0.01)
    await runner.stop()
    assert pbx.rings == []
    assert _attempts(seeded) == [(NUMBER, M.CANCELLED, None)]


async def test_no_callback_outside_service_hours_and_none_while_a_number_has_one_open(seeded, domain, clock):
    _abandons(seeded, clock)
    closed = dataclasses.replace(domain.policy, ivr=dataclasses.replace(
        domain.policy.ivr, service_hours=WeeklyHours(default=("11:00-12:00",))))
    shut = Domain(policy=closed, calendar=domain.calendar, city=domain.city, clock=clock)
    with session_scope(seeded) as s:
        assert M.plan(s, shut) == 0
        assert M.plan(s, domain) == 1
        assert M.plan(s, domain) == 0  # one open callback per number
        # a second scheduler that raced the first: the store refuses it a second open attempt
        s.add(MissedCallbackAttempt(caller_number=NUMBER, state=M.SCHEDULED, scheduled_for=clock(),
                                    idempotency_key="mc-raced"))
        try:
            s.flush()
            raise AssertionError("two open callbacks for one number")
        except Exception as exc:  # noqa: BLE001 - IntegrityError of either database
            assert "IntegrityError" in type(exc).__name__
            s.rollback()


async def test_a_killed_scheduler_call_is_adopted_and_settled_once_never_placed_again(seeded, domain, clock):
    """SIGKILL in the middle, by the fake: the first runner's task is gone while its call is up;
    the next runner finds the call up (callback/fate.py), waits for its end and records it."""
    _abandons(seeded, clock)
    pbx = FakeMissedPbx()
    pbx.hold = True
    first = MissedCallbackRunner(domain, seeded, pbx, OPTS)
    assert await first.sweep() == 1
    while not pbx.citizen_dials:
        await asyncio.sleep(0.01)
    for task in list(first._tasks.values()):  # killed: nothing of it runs any more
        task.cancel()
    for sub in first._subs:
        sub.close()
    assert _attempts(seeded)[0][1] in (M.DIALING, M.ANSWERED)

    second = MissedCallbackRunner(domain, seeded, pbx, OPTS)
    await second.sweep()
    assert second.stats.reconciled == {"up": 1}
    assert len(pbx.rings) == 1  # the call up is not placed again
    (chan,) = pbx.citizen_dials
    pbx.release(chan)
    await second.drain(timeout=10, poll=0.01)
    await second.stop()
    assert list(pbx.citizen_dials.values()) == [1]
    assert _attempts(seeded) == [(NUMBER, M.REACHED, "8001")]
    assert [reached for _n, reached, _by in _callbacks(seeded)] == [True]


async def test_after_a_kill_a_call_gone_is_settled_by_the_ledger(seeded, domain, clock):
    """Gone with the ledger entry: the citizen was dialled, outcome unknown (a try that missed);
    gone without it: never dialled, back to scheduled and placed once by the next runner."""
    _abandons(seeded, clock)
    with session_scope(seeded) as s:
        _queued(s, "b1", "13800000002", "09:40:00", left="09:41:00")
        assert M.plan(s, domain) == 2
        dialled = M.claim(s, domain, "8001")
        never = M.claim(s, domain, "8002")
    pbx = FakeMissedPbx(operators=())
    pbx.ledger.add(dialled.key)
    runner = MissedCallbackRunner(domain, seeded, pbx, OPTS)
    await runner.sweep()
    assert runner.stats.reconciled == {"dialled": 1, "never": 1}
    states = {n: st for n, st, _op in _attempts(seeded)}
    assert states == {dialled.phone: M.NOT_REACHED, never.phone: M.SCHEDULED}
    pbx.operators = ["8002"]
    await runner.drain(timeout=10, poll=0.01)
    await runner.stop()
    assert [(n, chan) for _o, n, chan in pbx.rings] == [(never.phone, never.key)]


async def test_a_dial_not_sent_goes_back_to_scheduled(seeded, domain, clock):
    _abandons(seeded, clock)
    pbx = FakeMissedPbx()
    pbx.connected = False
    runner = MissedCallbackRunner(domain, seeded, pbx, OPTS)
    with session_scope(seeded) as s:
        M.plan(s, domain)
    runner.attach()
    with session_scope(seeded) as s:
        claimed = M.claim(s, domain, "8001")
    runner._place(claimed)
    await asyncio.gather(*runner._tasks.values())
    await runner.stop()
    assert _attempts(seeded) == [(NUMBER, M.SCHEDULED, None)] and pbx.rings == []


def test_the_desk_list_shows_a_number_the_scheduler_is_calling_back(api, seeded, domain, clock):
    """So the front desk does not dial it by hand at the same time."""
    _abandons(seeded, clock)
    rows = ok(api.get("/api/v1/missed-calls", "op1"))
    assert [(r["number"], r["automatic"]) for r in rows] == [(NUMBER, None)]
    with session_scope(seeded) as s:
        M.plan(s, domain)
    assert [r["automatic"] for r in ok(api.get("/api/v1/missed-calls", "op1"))] == [M.SCHEDULED]
    with session_scope(seeded) as s:
        M.claim(s, domain, "8001")
    assert [r["automatic"] for r in ok(api.get("/api/v1/missed-calls", "op1"))] == [M.DIALING]
