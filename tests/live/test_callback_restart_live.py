"""Restarts leave nothing behind, on the real Asterisk (issue 19 item 6).

`callcenter callbacks run-now` is SIGKILLed twice in the middle of a batch, each time just after a
citizen rated the survey (the attempt is settled in the store while the thank-you still plays, so
the store alone does not see that line as taken), and a restarted process carries on. A watcher
polls Asterisk's channels all along (CoreShowChannels): the callback calls of this test up at once
never exceed the concurrency cap, every callback is dialled exactly once (Asterisk's own
`CallcenterCallbackDial` events), and no ledger entry of a settled attempt stays in AstDB.

PostgreSQL (a schema of its own): the scheduler lock dies with its holder's connection, so the
restarted process, started beforehand and waiting for the lock like a supervisor's restart, takes
over at once, while the killed process's calls are still up.
"""
from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from sqlalchemy import select, text

from agi.hotline import Hotline, router_for
from agi.server import FastAGIServer
from callback import attempts as A
from callcenter.ami.client import AMIClient
from callcenter.callbacks import LEDGER_FAMILY
from callcenter.pbx.credentials import ami_secret
from callcenter.pbx.root import RECORDINGS_DIR
from tests.live.callback_helpers import IN_HOURS, FakeClock, callback_domain, make_store, reported_case
from tests.live.helpers import agi_port_lock
from tests.live.test_callback_live import DialObserver, _cli, _read_until, _spawn
from ticketing.models import CallbackAttempt
from ticketing.store import session_scope

pytestmark = pytest.mark.live

CAP = 4  # config/policy.yaml callback.concurrency: what the CLI runs with
# 5...: answers and rates "satisfied" (a survey of ~20 s); 2...: busy at once
PHONES = [f"{d}0000004{i:03d}" for i, d in enumerate("525252525555")]


class RatingSignal:
    """The survey side given to our FastAGI server: `callback.attempts`, telling the test each time
    a citizen's rating was stored (the moment to kill the scheduler: the call is still up)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.rated: list[str] = []
        self.changed = asyncio.Event()

    def record_survey_answer(self, session, domain, *, key, **kwargs):
        out = A.record_survey_answer(session, domain, key=key, **kwargs)
        self.loop.call_soon_threadsafe(self._note, key)
        return out

    def finish_survey(self, *args, **kwargs):
        return A.finish_survey(*args, **kwargs)

    def _note(self, key: str) -> None:
        self.rated.append(key)
        self.changed.set()

    async def wait_rating(self, of, timeout: float) -> str:
        async def until():
            while True:
                hit = next((k for k in self.rated if of(k)), None)
                if hit is not None:
                    return hit
                self.changed.clear()
                await self.changed.wait()
        return await asyncio.wait_for(until(), timeout)


class CallWatcher:
    """Polls Asterisk for the callback calls of this test: each is its own channel
    `Local/<number>@outbound-callback-<n>;1`, whose Uniqueid is the ledger id (our prefix)."""

    def __init__(self, ami: AMIClient, prefix: str) -> None:
        self.ami, self.prefix = ami, prefix
        self.peak = 0
        self.samples = 0
        self.peak_calls: set[str] = set()

    async def count(self) -> set[str]:
        _resp, items = await self.ami.send_action_list({"Action": "CoreShowChannels"}, timeout=5)
        return {i.get_first("Uniqueid") for i in items
                if (i.get_first("Uniqueid") or "").startswith(self.prefix)
                and "@outbound-callback-" in (name := i.get_first("Channel") or "") and name.endswith(";1")}

    async def run(self) -> None:
        while True:
            calls = await self.count()
            self.samples += 1
            if len(calls) > self.peak:
                self.peak, self.peak_calls = len(calls), calls
            await asyncio.sleep(0.05)  # a sampling rate, not a wait for an event


async def _ledger(ami: AMIClient, prefix: str) -> set[str]:
    _resp, items = await ami.send_action_list({"Action": "DBGetTree", "Family": LEDGER_FAMILY}, timeout=5)
    path = f"/{LEDGER_FAMILY}/{prefix}"
    return {k[len(path):] for i in items if (k := i.get_first("Key") or "").startswith(path)}


async def test_issue19_sigkill_mid_batch_restart_keeps_the_cap_and_leaves_no_settled_ledger_entry(asterisk):
    """R7.4 / issue 19 item 6: across two SIGKILLs and restarts the callback calls up in Asterisk
    never exceed the cap, each callback is dialled once, and no settled attempt keeps its ledger entry."""
    from tests.conftest import PG_BASE_URL, _pg_url
    from ticketing.store import make_engine

    prefix = f"r{uuid.uuid4().hex[:6]}-"
    schema = f"cbr_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _pg_url(schema)
    procs: list[asyncio.subprocess.Process] = []
    outputs: list[str] = []
    try:
        clock = FakeClock(IN_HOURS)
        domain = callback_domain(clock)
        assert domain.policy.callback.concurrency == CAP
        engine, sessions = make_store(url, domain)
        numbers = [reported_case(sessions, domain, p) for p in PHONES]
        keys = {f"cb-{n}-1" for n in numbers}
        with agi_port_lock(asterisk):
            signal = RatingSignal()
            hotline = Hotline.create(domain, sessions, RECORDINGS_DIR, survey=signal)
            server = FastAGIServer(router_for(hotline), host=asterisk.agi_host, port=asterisk.agi_port,
                                   on_stop=hotline.close)
            await server.start()
            ami = AMIClient.from_settings(asterisk)
            await ami.start()
            observer = DialObserver(ami, prefix)
            watcher = CallWatcher(ami, prefix)
            watching = asyncio.create_task(watcher.run())
            # the AMI secret as the fixture found it (the env file of a checkout elsewhere is not read)
            env = {**os.environ, "CALLCENTER_DATABASE_URL": url, "CALLCENTER_AMI_SECRET": ami_secret(asterisk)}
            args = _cli("run-now", "--fake-now", IN_HOURS.isoformat(), "--channel-prefix", prefix,
                        "--dial-timeout", "10", "--wait-lock", "60", env=env)
            try:
                proc = await _spawn(args, env)
                procs.append(proc)
                up_at_kill = []
                for _kill in range(2):
                    seen: list[str] = []
                    await _read_until(proc, "callback(s) due", 60, seen)  # it holds the lock
                    outputs.append("".join(seen))
                    dialled_before = set(observer.dials)
                    nxt = await _spawn(args, env)  # the restart, waiting for the lock
                    procs.append(nxt)
                    # a citizen of this process's calls has just rated: its call is still up
                    try:
                        await signal.wait_rating(lambda k, seen=dialled_before: prefix + k not in seen, 90)
                    except TimeoutError:
                        raise AssertionError(f"no rating: {signal.rated} {observer.dials} {outputs}") from None
                    proc.kill()
                    await proc.wait()
                    up_at_kill.append(len(await watcher.count()))
                    outputs.append((await proc.stdout.read()).decode(errors="replace"))
                    proc = nxt
                out, _ = await asyncio.wait_for(proc.communicate(), 90)
                outputs.append(out.decode(errors="replace"))
                assert proc.returncode == 0, outputs
                # the calls of the killed processes end and are settled by the last one
                with session_scope(sessions) as s:
                    states = dict(s.execute(select(CallbackAttempt.idempotency_key, CallbackAttempt.state)
                                            .where(CallbackAttempt.attempt_no == 1)).all())
                left = await _ledger(ami, prefix)
            finally:
                watching.cancel()
                observer.close()
                await ami.stop()
                await server.stop()
                engine.dispose()

        assert all(n > 0 for n in up_at_kill), ("killed with calls up", up_at_kill)
        assert watcher.samples > 100
        assert watcher.peak <= CAP, (watcher.peak, sorted(watcher.peak_calls), outputs)
        assert set(observer.dials) == {prefix + k for k in keys}, (observer.dials, outputs)
        assert all(count == 1 for count in observer.dials.values()), observer.dials
        assert all(st not in A.OPEN_STATES for st in states.values()), states
        settled_left = {k for k in left if states.get(k) not in A.OPEN_STATES}
        assert not settled_left, (settled_left, outputs)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
