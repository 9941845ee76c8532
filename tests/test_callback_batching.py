"""The runner's batched store work (issue 5): results of calls that end together share one
transaction, claims still go before their Originate, and a crash at any moment, also between a
call's end and the batched write of its result, never dials a key twice. Against a fake PBX
(tests/callback_fake_pbx.py) on SQLite and PostgreSQL; the same on the real Asterisk is
tests/live/test_callback_live.py."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from callback import attempts as A
from callback.runner import CallbackRunner, RunnerOptions
from callcenter.ami.client import AMIClient
from callcenter.callbacks import AmiCallbackPbx
from tests.callback_fake_pbx import FakePBX
from tests.live.callback_helpers import reported_case
from ticketing import audit
from ticketing.domain import Domain
from ticketing.models import AuditEvent, Call, CallbackAttempt, Case
from ticketing.store import session_scope


def _policy(domain: Domain, **kw) -> Domain:
    policy = dataclasses.replace(domain.policy, callback=dataclasses.replace(domain.policy.callback, **kw))
    return Domain(policy=policy, calendar=domain.calendar, city=domain.city, clock=domain.clock)


def _states(sessions) -> dict[str, str]:
    with session_scope(sessions) as s:
        return dict(s.execute(select(CallbackAttempt.idempotency_key, CallbackAttempt.state)).all())


async def _runner(pbx: FakePBX, domain, sessions, **opts) -> tuple[CallbackRunner, AMIClient]:
    ami = AMIClient(*pbx.client_args())
    await ami.start()
    opts = {"settle_seconds": 0, **opts}
    return CallbackRunner(domain, sessions, AmiCallbackPbx(ami), RunnerOptions(**opts)), ami


async def _run_to_end(pbx: FakePBX, domain, sessions):
    """A fresh runner drains everything due, then stops; returns its stats and the runner."""
    runner, ami = await _runner(pbx, domain, sessions)
    try:
        return await runner.drain(timeout=30), runner
    finally:
        await runner.stop()
        await ami.stop()


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)


async def _crash(runner: CallbackRunner, ami: AMIClient, drain: asyncio.Task) -> None:
    """Like SIGKILL of the process at this moment: nothing more is sent or written. Taken between
    two writer transactions (in a real kill a transaction in progress is simply not committed)."""
    await _until(lambda: not runner._pass_running)
    runner._stopping = True
    runner._ready.clear()
    for task in [drain, runner._writer, *runner._tasks.values(), *runner._adopted.values()]:
        if task is not None:
            task.cancel()
    await asyncio.gather(drain, return_exceptions=True)
    await ami.stop()


def test_r7_4_a_batch_of_results_settles_each_like_one_at_a_time(seeded, domain, clock):
    """One transaction, several results: retries with backoff, the manual list after max_attempts
    (workflow + audit chain), nothing for an attempt already rated or a case settled by hand."""
    d = _policy(domain, max_attempts=2, retry_backoff_minutes=(30,))
    numbers = [reported_case(seeded, d, f"2380000000{i}") for i in range(4)]
    with session_scope(seeded) as s:
        A.plan_due(s, d)
    with session_scope(seeded) as s:
        claimed = {c.case_number: c for c in A.claim(s, d, 10)}
    busy, no_answer, rated, by_hand = (claimed[n] for n in numbers)
    with session_scope(seeded) as s:
        A.record_survey_answer(s, d, key=rated.key, case_number=rated.case_number, value="satisfied")
    with session_scope(seeded) as s:
        wf = d.workflow(s)
        wf.mark_callback_manual(A.CALLBACK_ACTOR, wf.get_case(by_hand.case_number), reason="front desk calls")
    t0 = clock()
    with session_scope(seeded) as s:
        out = A.record_unsuccessful_many(s, d, [
            A.Unsuccessful(busy.attempt_id, A.BUSY, "originate reason 5", (A.DIALING,), True, "c-busy"),
            A.Unsuccessful(no_answer.attempt_id, A.NO_ANSWER, "originate reason 3", (A.DIALING,), True, "c-na"),
            A.Unsuccessful(rated.attempt_id, A.FAILED, "answered, but the survey did not finish"),
            A.Unsuccessful(by_hand.attempt_id, A.BUSY, "originate reason 5", (A.DIALING,), True, "c-hand"),
        ])
    assert out == ["retry", "retry", None, None]
    states = _states(seeded)
    assert states[busy.key] == A.BUSY and states[no_answer.key] == A.NO_ANSWER and states[rated.key] == A.DONE
    assert states[f"cb-{busy.case_number}-2"] == A.SCHEDULED
    assert f"cb-{by_hand.case_number}-2" not in states and f"cb-{rated.case_number}-2" not in states
    with session_scope(seeded) as s:
        second = s.execute(select(CallbackAttempt).where(CallbackAttempt.idempotency_key == f"cb-{busy.case_number}-2")).scalar_one()
        assert second.scheduled_for == t0 + timedelta(minutes=30)
        call = s.execute(select(Call).where(Call.uniqueid == "c-busy")).scalar_one()
        assert (call.outcome, call.purpose, call.case_id) == ("busy", "callback", busy.case_id)

    # the second round: both on the manual list, in one transaction with one chain head
    clock.advance(minutes=30)
    with session_scope(seeded) as s:
        again = A.claim(s, d, 10)
    assert sorted(c.key for c in again) == sorted([f"cb-{busy.case_number}-2", f"cb-{no_answer.case_number}-2"])
    with session_scope(seeded) as s:
        out = A.record_unsuccessful_many(s, d, [A.Unsuccessful(c.attempt_id, A.BUSY, "originate reason 5", (A.DIALING,),
                                                               True, f"c2-{c.key}") for c in again])
    assert out == ["manual", "manual"]
    with session_scope(seeded) as s:
        manual = {c.number for c in A.manual_list(s)}
        assert manual == {busy.case_number, no_answer.case_number, by_hand.case_number}
        marks = s.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "callback_manual")).scalar_one()
        assert marks == 3
        assert audit.verify(s).ok


def test_r7_4_two_results_for_one_case_in_a_batch_count_both(seeded, domain):
    """A retry and its case's earlier attempt settled in one batch (a dead process's attempt
    reconciled with a fresh one): counted one after the other, like two transactions."""
    d = _policy(domain, max_attempts=2, retry_backoff_minutes=(30,))
    number = reported_case(seeded, d, "23800000009")
    with session_scope(seeded) as s:
        A.plan_due(s, d)
    with session_scope(seeded) as s:
        (first,) = A.claim(s, d, 10)
    with session_scope(seeded) as s:  # a second attempt in flight at the same time
        case_id = s.execute(select(Case.id).where(Case.number == number)).scalar_one()
        s.add(CallbackAttempt(case_id=case_id, attempt_no=2, idempotency_key=f"cb-{number}-2", state=A.DIALING,
                              scheduled_for=d.clock()))
    with session_scope(seeded) as s:
        second_id = s.execute(select(CallbackAttempt.id).where(CallbackAttempt.attempt_no == 2)).scalar_one()
        out = A.record_unsuccessful_many(s, d, [A.Unsuccessful(first.attempt_id, A.BUSY),
                                                A.Unsuccessful(second_id, A.NO_ANSWER)])
    assert out == ["retry", "manual"]


async def test_issue5_results_of_calls_ending_together_share_transactions(seeded, domain):
    """Busy lines at the cap: far fewer store transactions than callbacks, the cap is never
    exceeded, every callback dialled once, every case on the manual list once, chain verifies."""
    d = _policy(domain, concurrency=4, max_attempts=1)
    numbers = [reported_case(seeded, d, f"2390000{i:04d}") for i in range(16)]
    async with FakePBX(busy_after=0.02) as pbx:
        stats, runner = await _run_to_end(pbx, d, seeded)
    assert stats.claimed == 16 and stats.outcomes == {"busy": 16}, stats
    assert sorted(pbx.dialled) == sorted(f"cb-{n}-1" for n in numbers)
    assert set(pbx.dialled.values()) == {1}
    assert pbx.peak_up <= 4
    # the 4 calls placed together end together: their results share a transaction
    assert runner.result_transactions <= 8, runner.result_transactions
    assert not pbx.ledger  # every settled attempt's ledger entry removed
    with session_scope(seeded) as s:
        assert {c.number for c in A.manual_list(s)} == set(numbers)
        assert s.execute(select(func.count()).select_from(AuditEvent)
                         .where(AuditEvent.action == "callback_manual")).scalar_one() == 16
        assert audit.verify(s).ok


async def test_issue5_a_backlog_larger_than_a_planning_page_is_called_while_it_is_planned(seeded, domain):
    """Calls start after the first page of planning; the rest is planned page by page while they
    run, and drain waits for it: every case dialled exactly once."""
    d = _policy(domain, concurrency=2, max_attempts=1)
    numbers = [reported_case(seeded, d, f"2390500{i:04d}") for i in range(9)]
    async with FakePBX(busy_after=0.01) as pbx:
        runner, ami = await _runner(pbx, d, seeded, plan_batch=2)
        try:
            stats = await runner.drain(timeout=30)
            assert not runner._plan_more
        finally:
            await runner.stop()
            await ami.stop()
    assert stats.planned == 9 and stats.claimed == 9 and stats.outcomes == {"busy": 9}, stats
    assert sorted(pbx.dialled) == sorted(f"cb-{n}-1" for n in numbers) and set(pbx.dialled.values()) == {1}
    assert pbx.peak_up <= 2


async def test_issue5_crash_between_call_end_and_batched_write_is_settled_never_redialled(seeded, domain, clock):
    """The calls ended (busy) but the process died before the writer's transaction: the attempts
    are still `dialing` with Asterisk's ledger entry. After restart reconcile counts them as
    dialled with the outcome unknown (a failed try, retried after the backoff), never redials."""
    d = _policy(domain, concurrency=3, max_attempts=2, retry_backoff_minutes=(30,))
    numbers = [reported_case(seeded, d, f"2391000{i:04d}") for i in range(3)]
    async with FakePBX(busy_after=0.01) as pbx:
        # a long write window: the results of the ended calls wait in memory
        runner, ami = await _runner(pbx, d, seeded, write_window=30)
        drain = asyncio.create_task(runner.drain(timeout=60))
        await _until(lambda: len(runner._results) == 3)
        await _crash(runner, ami, drain)
        assert set(_states(seeded).values()) == {A.DIALING}
        assert len(pbx.ledger) == 3

        stats, _ = await _run_to_end(pbx, d, seeded)  # a restarted process
    assert stats.reconciled == {"dialled": 3}, stats
    assert stats.claimed == 0  # the retries wait for their backoff
    assert sorted(pbx.dialled) == sorted(f"cb-{n}-1" for n in numbers) and set(pbx.dialled.values()) == {1}
    states = _states(seeded)
    for n in numbers:
        assert states[f"cb-{n}-1"] == A.FAILED and states[f"cb-{n}-2"] == A.SCHEDULED
    assert not pbx.ledger


@pytest.mark.parametrize("kills", [(2, 7), (5, 11, 13)])
async def test_issue5_killed_at_any_moment_every_due_callback_is_dialled_once(seeded, domain, kills):
    """Killed after k Originates (spare claims committed but not dialled, results queued, calls
    up), restarted each time: in the end every due callback was dialled exactly once."""
    d = _policy(domain, concurrency=4, max_attempts=2, retry_backoff_minutes=(30,))
    numbers = [reported_case(seeded, d, f"2392000{i:04d}") for i in range(16)]
    async with FakePBX(busy_after=0.005) as pbx:
        # settle_seconds: an Originate written just before the kill may still be on its way into
        # the PBX (as in production: the restarted runner waits before it settles anything)
        for k in kills:
            runner, ami = await _runner(pbx, d, seeded, settle_seconds=0.3, plan_every=0.3)
            drain = asyncio.create_task(runner.drain(timeout=60))
            await _until(lambda k=k: sum(pbx.dialled.values()) >= k)
            await _crash(runner, ami, drain)
        runner, ami = await _runner(pbx, d, seeded, settle_seconds=0.3, plan_every=0.3)
        try:
            await runner.drain(timeout=60)
        finally:
            await runner.stop()
            await ami.stop()
    assert sorted(pbx.dialled) == sorted(f"cb-{n}-1" for n in numbers), pbx.dialled
    assert set(pbx.dialled.values()) == {1}, pbx.dialled
    states = _states(seeded)
    for n in numbers:
        # busy, or killed before its result was written: dialled, outcome unknown
        assert states[f"cb-{n}-1"] in (A.BUSY, A.FAILED), (n, states[f"cb-{n}-1"])
    assert all(st == A.SCHEDULED for key, st in states.items() if not key.endswith("-1")), states


async def test_issue5_stepping_down_puts_spare_claims_back_undialled(seeded, domain):
    """Spares claimed ahead while calls end fast are never dialled after halt (step-down, lease
    lost): they go back to `scheduled` with the same key."""
    d = _policy(domain, concurrency=2, max_attempts=1)
    for i in range(6):
        reported_case(seeded, d, f"2393000{i:04d}")
    async with FakePBX() as pbx:
        pbx.hold = True  # the calls stay up
        runner, ami = await _runner(pbx, d, seeded)
        drain = asyncio.create_task(runner.drain(timeout=60))
        try:
            await _until(lambda: len(runner._calling) == 2)
            runner._ended.extend([time.monotonic()] * 2)  # as if calls had just ended fast
            await runner._flush()
            spares = [c.key for c, _t in runner._ready]
            assert len(spares) == 2
            assert all(_states(seeded)[k] == A.DIALING for k in spares)
            runner.halt()
            await runner._flush()
            states = _states(seeded)
            assert all(states[k] == A.SCHEDULED for k in spares), states
            pbx.hold = False
            await asyncio.wait_for(drain, 30)
        finally:
            pbx.hold = False
            await runner.stop()
            await ami.stop()
    assert len(pbx.dialled) == 2 and not set(spares) & set(pbx.dialled)
