"""回访 callbacks on the real Asterisk (R7.4, R7.5): one fake citizen phone per behaviour.

The phones are `[citizen-phones]` (extensions_testing.conf) by first digit: 5 presses 1, 7 presses 3,
1 answers and stays silent, 3 rings and never answers, 2 is busy. Our FastAGI server runs the survey
on the install's port (held with `agi_port_lock`, other sessions share this Asterisk) over a fresh
SQLite store with a FakeClock; channel ids carry a per-test prefix.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from callcenter.pbx.root import RECORDINGS_DIR
from agi.hotline import Hotline, router_for
from agi.server import FastAGIServer
from callback import attempts as A
from callback.runner import CallbackRunner, RunnerOptions
from callcenter.ami.client import AMIClient
from callcenter.callbacks import AmiCallbackPbx
from tests.live.callback_helpers import IN_HOURS, FakeClock, callback_domain, make_store, reported_case
from tests.conftest import ROOT
from tests.live.helpers import agi_port_lock
from ticketing.enums import CaseStatus, Satisfaction
from ticketing.models import Call, CallbackAttempt, Case
from ticketing.store import session_scope

pytestmark = pytest.mark.live

PHONES = {
    "press_1": "50000000001",
    "press_3": "70000000003",
    "silence": "10000000005",
    "no_answer": "30000000004",
    "busy": "20000000002",
}


@pytest.fixture
async def env(asterisk, tmp_path):
    clock = FakeClock(IN_HOURS)
    domain = callback_domain(clock, concurrency=5, max_attempts=2, retry_backoff_minutes=(30,))
    engine, sessions = make_store(f"sqlite:///{tmp_path / 'cb.db'}", domain)
    with agi_port_lock(asterisk):
        hotline = Hotline.create(domain, sessions, RECORDINGS_DIR, survey=A)
        server = FastAGIServer(router_for(hotline), host=asterisk.agi_host, port=asterisk.agi_port,
                               on_stop=hotline.close)
        await server.start()
        ami = AMIClient.from_settings(asterisk)
        await ami.start()
        opts = RunnerOptions(dial_timeout=6, finish_grace=1.0, settle_seconds=0,
                             channel_prefix=f"t{uuid.uuid4().hex[:6]}-")
        runner = CallbackRunner(domain, sessions, AmiCallbackPbx(ami), opts)
        try:
            yield type("Env", (), dict(clock=clock, domain=domain, sessions=sessions, runner=runner, ami=ami))
        finally:
            await runner.stop(wait=False)
            await ami.stop()
            await server.stop()
            engine.dispose()


def _attempts(sessions, number: str) -> list[CallbackAttempt]:
    with session_scope(sessions) as s:
        case_id = s.execute(select(Case.id).where(Case.number == number)).scalar_one()
        rows = list(s.execute(select(CallbackAttempt).where(CallbackAttempt.case_id == case_id)
                              .order_by(CallbackAttempt.attempt_no)).scalars())
        s.expunge_all()
        return rows


def _case(sessions, number: str) -> Case:
    with session_scope(sessions) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        s.expunge(case)
        return case


async def test_r7_4_r7_5_each_citizen_behaviour_gives_its_result_retry_and_case_state(env):
    numbers = {name: reported_case(env.sessions, env.domain, phone) for name, phone in PHONES.items()}
    t0 = env.clock()

    stats = await env.runner.drain(timeout=150)
    assert stats.claimed == 5, stats

    # press 1: satisfied, stored on the case with the call, case closed (R7.5)
    (a,) = _attempts(env.sessions, numbers["press_1"])
    case = _case(env.sessions, numbers["press_1"])
    assert (a.state, a.result) == (A.DONE, Satisfaction.SATISFIED), (a.state, a.detail)
    assert case.satisfaction == Satisfaction.SATISFIED and case.satisfaction_source == "callback"
    assert case.status == CaseStatus.CLOSED and case.close_met is True and case.callback_met is True
    with session_scope(env.sessions) as s:
        call = s.get(Call, a.call_id)
        assert call.case_id == case.id and call.purpose == "callback" and call.direction == "outbound"
        assert call.uniqueid == env.runner.opts.channel_prefix + a.idempotency_key
        assert any(d["digits"] == "1" for d in call.digits)

    # press 3: unsatisfied, on the back office's list (R7.5), not closed
    (a,) = _attempts(env.sessions, numbers["press_3"])
    case = _case(env.sessions, numbers["press_3"])
    assert (a.state, a.result) == (A.DONE, Satisfaction.UNSATISFIED), (a.state, a.detail)
    assert case.status == CaseStatus.UNSATISFIED and case.satisfaction == Satisfaction.UNSATISFIED

    # silence: asked twice, not rated; no answer; busy: each retried 30 min later, case still waiting
    for name, state in (("silence", A.NOT_RATED), ("no_answer", A.NO_ANSWER), ("busy", A.BUSY)):
        first, second = _attempts(env.sessions, numbers[name])
        assert first.state == state, (name, first.state, first.detail)
        assert second.state == A.SCHEDULED and second.attempt_no == 2
        assert second.idempotency_key == f"cb-{numbers[name]}-2"
        assert second.scheduled_for == t0 + timedelta(minutes=30), name
        case = _case(env.sessions, numbers[name])
        assert case.status == CaseStatus.REPORTED and not case.callback_manual
    (silent,) = _attempts(env.sessions, numbers["silence"])[:1]
    assert silent.result == Satisfaction.NOT_RATED
    busy_attempt = _attempts(env.sessions, numbers["busy"])[0]
    with session_scope(env.sessions) as s:
        call = s.get(Call, silent.call_id)
        assert [d["digits"] for d in call.digits] == ["", ""], "asked twice, no key"
        busy_call = s.get(Call, busy_attempt.call_id)
        assert busy_call.outcome == "busy" and busy_call.purpose == "callback"

    # nothing is called again before its retry time
    assert (await env.runner.drain(timeout=10)).claimed == 5

    # 30 minutes later the second (last: max_attempts=2) attempts fail too -> manual-callback list
    env.clock.advance(minutes=30)
    stats = await env.runner.drain(timeout=150)
    assert stats.claimed == 8, stats
    for name in ("silence", "no_answer", "busy"):
        attempts = _attempts(env.sessions, numbers[name])
        assert len(attempts) == 2 and attempts[1].state != A.SCHEDULED, (name, [x.state for x in attempts])
        case = _case(env.sessions, numbers[name])
        assert case.status == CaseStatus.REPORTED and case.callback_manual, name
    with session_scope(env.sessions) as s:
        manual = {c.number for c in A.manual_list(s)}
    assert manual == {numbers["silence"], numbers["no_answer"], numbers["busy"]}



# ---- restart safety and one active scheduler (issue 5 items 1 and 5) -----------------------------

class DialObserver:
    """Counts, from Asterisk's own events, how often each callback was really dialled: the
    `CallcenterCallbackDial` UserEvent that [outbound-callback] sends before Dial, per ledger id."""

    def __init__(self, ami: AMIClient, prefix: str):
        self.prefix = prefix
        self.dials: dict[str, int] = {}
        self.changed = asyncio.Event()
        self._sub = ami.subscribe(self._on_event, ["UserEvent"])

    def _on_event(self, msg) -> None:
        if msg.get_first("UserEvent") != "CallcenterCallbackDial":
            return
        ledger = msg.get_first("Ledger") or ""
        if ledger.startswith(self.prefix):
            self.dials[ledger] = self.dials.get(ledger, 0) + 1
            self.changed.set()

    async def wait_total(self, n: int, timeout: float) -> None:
        async def until():
            while sum(self.dials.values()) < n:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(until(), timeout)

    def close(self) -> None:
        self._sub.close()


def _cli(*args: str, env: dict) -> list[str]:
    return [sys.executable, "-m", "callcenter.cli", "callbacks", *args]


async def _spawn(args: list[str], env: dict) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*args, env=env, cwd=str(ROOT), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)


async def _read_until(proc: asyncio.subprocess.Process, marker: str, timeout: float, seen: list[str]) -> None:
    async def until():
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"process ended before {marker!r}: {''.join(seen)[-2000:]}")
            seen.append(line.decode(errors="replace"))
            if marker in seen[-1]:
                return
    await asyncio.wait_for(until(), timeout)


def _settled_first_attempts(sessions) -> dict[str, str]:
    with session_scope(sessions) as s:
        rows = s.execute(select(CallbackAttempt.idempotency_key, CallbackAttempt.state)
                         .where(CallbackAttempt.attempt_no == 1)).all()
    return dict(rows)


async def _wait_settled(sessions, n: int, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = _settled_first_attempts(sessions)
        if len(states) >= n and all(st not in A.OPEN_STATES for st in states.values()):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"first attempts not settled: {states}")
        await asyncio.sleep(0.5)


@pytest.fixture
async def agi_and_observer(asterisk, tmp_path):
    """Our FastAGI server (for answered calls) and an AMI observer, in this process."""
    prefix = f"k{uuid.uuid4().hex[:6]}-"
    with agi_port_lock(asterisk):
        ami = AMIClient.from_settings(asterisk)
        await ami.start()
        observer = DialObserver(ami, prefix)
        servers = []

        async def serve(domain, sessions):
            hotline = Hotline.create(domain, sessions, RECORDINGS_DIR, survey=A)
            server = FastAGIServer(router_for(hotline), host=asterisk.agi_host, port=asterisk.agi_port,
                                   on_stop=hotline.close)
            await server.start()
            servers.append(server)
        try:
            yield prefix, observer, serve
        finally:
            observer.close()
            for server in servers:
                await server.stop()
            await ami.stop()


async def test_issue5_two_schedulers_on_postgresql_one_active_and_the_other_takes_over(agi_and_observer, asterisk):
    """Two `callbacks run` processes share one PostgreSQL: each due callback is dialled once (seen
    from Asterisk), only one process is active, and after SIGKILL of the active one the standby
    takes over within a minute and places the callbacks that come due later."""
    from sqlalchemy import text

    from tests.conftest import PG_BASE_URL, _pg_url
    from ticketing.store import make_engine

    prefix, observer, serve = agi_and_observer
    schema = f"cb_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _pg_url(schema)
    procs: list[asyncio.subprocess.Process] = []
    try:
        clock = FakeClock(IN_HOURS)
        domain = callback_domain(clock)
        engine, sessions = make_store(url, domain)
        await serve(domain, sessions)
        phones = ["20000001001", "50000001002", "20000001003", "20000001004", "50000001005", "20000001006"]
        first = [reported_case(sessions, domain, p) for p in phones[:4]]

        env = {**os.environ, "CALLCENTER_DATABASE_URL": url}
        args = _cli("run", "--poll-seconds", "1", "--sweep-seconds", "2", "--fake-now", IN_HOURS.isoformat(),
                    "--channel-prefix", prefix, "--dial-timeout", "5", env=env)
        out_a: list[str] = []
        out_b: list[str] = []
        a = await _spawn(args, env)
        procs.append(a)
        await _read_until(a, "ACTIVE", 30, out_a)
        b = await _spawn(args, env)
        procs.append(b)
        await _read_until(b, "started", 30, out_b)

        await _wait_settled(sessions, 4, 60)
        await asyncio.sleep(3)  # B keeps polling meanwhile: it must stay a standby
        assert not any("ACTIVE" in line for line in out_b), out_b

        a.kill()  # SIGKILL: no clean-up, its lock connection just dies
        await a.wait()
        t_kill = time.monotonic()
        await _read_until(b, "ACTIVE", 60, out_b)
        assert time.monotonic() - t_kill < 60

        later = [reported_case(sessions, domain, p) for p in phones[4:]]
        await _wait_settled(sessions, 6, 60)

        keys = {prefix + f"cb-{n}-1" for n in first + later}
        assert set(observer.dials) == keys, observer.dials
        assert all(count == 1 for count in observer.dials.values()), observer.dials
        states = _settled_first_attempts(sessions)
        assert states[f"cb-{first[1]}-1"] == A.DONE and states[f"cb-{later[0]}-1"] == A.DONE, states
        assert states[f"cb-{first[0]}-1"] == A.BUSY, states
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


async def test_issue5_sigkill_during_a_batch_then_restart_dials_every_due_callback_exactly_once(
        agi_and_observer, tmp_path):
    """`callbacks run-now` is killed with SIGKILL twice in the middle of a batch (answered
    surveys and busy lines in flight); after each restart every due callback ends up dialled
    exactly once, counted from Asterisk's own events."""
    prefix, observer, serve = agi_and_observer
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    clock = FakeClock(IN_HOURS)
    domain = callback_domain(clock)
    engine, sessions = make_store(url, domain)
    await serve(domain, sessions)
    phones = [f"{'5' if i % 3 == 0 else '2'}00000020{i:02d}" for i in range(12)]
    numbers = [reported_case(sessions, domain, p) for p in phones]
    env = {**os.environ, "CALLCENTER_DATABASE_URL": url}
    args = _cli("run-now", "--fake-now", IN_HOURS.isoformat(), "--channel-prefix", prefix, "--dial-timeout", "5",
                "--wait-lock", "30", "--lease-seconds", "3", env=env)
    outputs: list[list[str]] = []
    for kill_after in (2, 6):
        proc = await _spawn(args, env)
        try:
            await observer.wait_total(kill_after, 60)
        except TimeoutError:
            proc.kill()
            raise AssertionError(f"dials {observer.dials}; {outputs}; {(await proc.stdout.read()).decode()}") from None
        proc.kill()
        await proc.wait()
        outputs.append([(await proc.stdout.read()).decode(errors="replace")])
    proc = await _spawn(args, env)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode(errors="replace")
    await _wait_settled(sessions, 12, 60)

    keys = {prefix + f"cb-{n}-1" for n in numbers}
    assert set(observer.dials) == keys, (observer.dials, outputs)
    assert all(count == 1 for count in observer.dials.values()), observer.dials
    states = _settled_first_attempts(sessions)
    for number, phone in zip(numbers, phones):
        state = states[f"cb-{number}-1"]
        if phone.startswith("2"):
            # busy, or (killed before the runner heard) dialled with its outcome unknown: a failed try
            assert state in (A.BUSY, A.FAILED), (number, state)
        else:
            assert state in (A.DONE, A.FAILED), (number, state)
    # nothing was dialled twice: any second attempt waits for its backoff, undialled
    with session_scope(sessions) as s:
        later = s.execute(select(CallbackAttempt.state).where(CallbackAttempt.attempt_no > 1)).scalars().all()
    assert all(st == A.SCHEDULED for st in later), later
    engine.dispose()


async def test_issue5_attempt_left_dialing_but_never_dialled_is_dialled_once_after_restart(env):
    """A crash between committing `dialing` and sending the Originate: Asterisk's ledger has no
    entry and no channel has the id, so the restarted runner dials it (once) with the same key."""
    number = reported_case(env.sessions, env.domain, "20000003001")
    with session_scope(env.sessions) as s:
        A.plan_due(s, env.domain)
    with session_scope(env.sessions) as s:
        (claimed,) = A.claim(s, env.domain, 5)  # committed as dialing; the "process" dies here
    assert claimed.key == f"cb-{number}-1"
    seen: list[str] = []
    mine = env.runner.opts.channel_prefix  # other sessions share this Asterisk
    sub = env.ami.subscribe(lambda m: m.get_first("UserEvent") == "CallcenterCallbackDial"
                            and (m.get_first("Ledger") or "").startswith(mine)
                            and seen.append(m.get_first("Ledger")), ["UserEvent"])
    try:
        stats = await env.runner.drain(timeout=30)
    finally:
        sub.close()
    assert stats.reconciled == {"never_dialled": 1}, stats
    assert seen == [env.runner.opts.channel_prefix + claimed.key]
    first, second = _attempts(env.sessions, number)
    assert (first.state, second.state) == (A.BUSY, A.SCHEDULED)
