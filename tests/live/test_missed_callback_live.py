"""漏接回拨 on the real Asterisk (issue 14 item 4; 国办函〔2025〕66号).

A citizen (an originated Local channel put straight into the queue context, as in
test_board_live.py) gives up twice in the queue while the only operator is paused; the call
control logs both abandons, so the number is on the list once. Then `callcenter callbacks run`
(the scheduler, with a standby process waiting for the PostgreSQL lock) rings the operator's phone
(baresip op8003, auto-answer) first; the operator's channel then dials the citizen's line
(`Local/<number>@citizen-phones`: a number starting with 1 answers), bridged, and the operator's
screen-pop says why. The active scheduler is SIGKILLed while the two talk; the standby takes over,
finds the call still up and, once the operator hangs up, records the callback as reached.
Asterisk's own `CallcenterCallbackDial` events show the citizen was dialled exactly once.
"""
from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest
from sqlalchemy import select, text

from callback import missed as M
from callcenter.auth import create_user
from callcenter.callcontrol import CallControl
from callcenter.callbacks import LEDGER_FAMILY
from callcenter.pbx.credentials import ami_secret
from tests.conftest import CONFIG_DIR, PASSWORD, PG_BASE_URL, _pg_url
from tests.live.helpers import agi_port_lock
from tests.live.phones import operator_phones, tone_wav
from tests.live.test_callback_live import DialObserver, _cli, _read_until, _spawn
from ticketing.domain import Domain
from ticketing.missed_call_model import MissedCallback, MissedCallbackAttempt
from ticketing.missed_calls import missed_calls
from ticketing.seed import seed_units
from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

pytestmark = pytest.mark.live

OPERATOR = "8003"
CITIZEN = "13912370001"  # citizen-phones: a number starting with 1 answers (and sends silence)


async def _until(what: str, check, timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(every)  # polling the store, which has no events to wait for


async def _abandon_twice(cc: CallControl, domain: Domain, sessions) -> None:
    """The same number gives up twice in the queue, each after waiting longer than min_wait_s."""
    uids, joins = [], []
    for _ in range(2):
        base = f"live-{uuid.uuid4().hex[:10]}"
        joins.append(asyncio.ensure_future(cc.link.wait_for(
            lambda m, uid=f"{base}-2": m.name == "QueueCallerJoin" and m.get_first("Uniqueid") == uid, 20)))
        await asyncio.sleep(0)
        reply = await cc.link.ami.send_action({
            "Action": "Originate", "Channel": "Local/s@hotline-queue", "Application": "Wait", "Data": "60",
            "CallerID": f'"citizen" <{CITIZEN}>', "Async": "true", "ChannelId": base,
            "OtherChannelId": f"{base}-2", "Timeout": "30000"})
        assert reply.success, reply
        uids.append(f"{base}-2")
    await asyncio.gather(*joins)
    await asyncio.sleep(domain.policy.missed_calls.min_wait_s + 1)  # a duration to wait out: the callers' wait
    for uid in uids:
        gone = asyncio.ensure_future(cc.link.wait_for(
            lambda m, uid=uid: m.name == "QueueCallerAbandon" and m.get_first("Uniqueid") == uid, 10))
        await cc.link.ami.send_action({"Action": "Hangup", "Channel": cc.link.channels[uid].name})
        await gone

    def listed():
        with session_scope(sessions) as s:
            return [m for m in missed_calls(s, domain.clock(), domain.policy) if m.number == CITIZEN and m.times == 2]
    await _until("both abandons on the list as one entry", listed, 20)


async def test_issue14_missed_caller_operator_rings_first_then_citizen_once_across_a_sigkill(asterisk, tmp_path):
    schema = f"mcl_{uuid.uuid4().hex[:10]}"
    prefix = f"m{uuid.uuid4().hex[:6]}-"
    admin = make_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _pg_url(schema)
    procs: list[asyncio.subprocess.Process] = []
    outputs: list[str] = []
    try:
        upgrade(url)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        domain = Domain.load(CONFIG_DIR)  # the real clock: the queue's rows are stamped by Asterisk
        assert domain.policy.ivr_open_at(domain.clock()), "service hours are 7x24 in config/policy.yaml"
        with session_scope(sessions) as s:
            seed_units(s, domain.city, domain.clock())
            create_user(s, username="op3", password=PASSWORD, role="front_desk", operator_extension=OPERATOR,
                        now=domain.clock())
        with agi_port_lock(asterisk), operator_phones(
                asterisk, tmp_path, [OPERATOR], audio_wav=tone_wav(tmp_path / "long.wav", seconds=90)) as phones:
            # (baresip ends a call when its microphone file ends: long enough for the whole test)
            phone = phones[f"op{OPERATOR}"]
            cc = CallControl.from_settings(asterisk, sessions, domain)
            await cc.start()
            observer = DialObserver(cc.link.ami, prefix)
            try:
                await cc.queue.login(OPERATOR, "张伟", paused=True, reason="after_call_work")
                await _abandon_twice(cc, domain, sessions)
                await cc.queue.unpause(OPERATOR)

                env = {**os.environ, "CALLCENTER_DATABASE_URL": url, "CALLCENTER_AMI_SECRET": ami_secret(asterisk),
                       "CALLCENTER_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
                args = _cli("run", "--sweep-seconds", "1", "--poll-seconds", "0.5", "--channel-prefix", prefix,
                            env=env)
                dialled = asyncio.ensure_future(cc.link.wait_for(
                    lambda m: m.name == "UserEvent" and m.get_first("UserEvent") == "CallcenterCallbackDial"
                    and (m.get_first("Ledger") or "").startswith(prefix), 90))
                await asyncio.sleep(0)
                first = await _spawn(args, env)
                procs.append(first)
                seen: list[str] = []
                await _read_until(first, "ACTIVE", 60, seen)
                standby = await _spawn(args, env)  # a supervisor's restart, waiting for the lock
                procs.append(standby)
                seen_standby: list[str] = []
                await _read_until(standby, "started", 60, seen_standby)

                # the operator's phone rings first (auto-answer); its channel then dials the citizen
                await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED", 30)
                dial = await dialled
                # the citizen's line is dialled by the operator's channel, after it answered
                assert (dial.get_first("Channel") or "").startswith(f"PJSIP/op{OPERATOR}-"), dial
                pop = next(p for p in cc.screenpop.sent if p.get("reason") == "missed_call_callback")
                assert (pop["operator"], pop["caller_number"], pop["missed_call"]["times"]) == (OPERATOR, CITIZEN, 2)
                with session_scope(sessions) as s:
                    attempt = s.execute(select(MissedCallbackAttempt)).scalar_one()
                    key, state = attempt.idempotency_key, attempt.state
                    debug = (attempt.detail, attempt.started_at, attempt.finished_at, phone.events)
                assert state == M.ANSWERED and attempt.operator_extension == OPERATOR, debug

                first.kill()  # SIGKILL while operator and citizen talk
                await first.wait()
                outputs.append("".join(seen) + (await first.stdout.read()).decode(errors="replace"))
                await _read_until(standby, "missed-call callbacks reconciled: {'up': 1}", 30, seen_standby)
                assert [c for c in cc.link.channels.values() if c.uniqueid == prefix + key], "the call is still up"
                phone.hangup()  # the operator ends the call

                def settled():
                    with session_scope(sessions) as s:
                        row = s.execute(select(MissedCallbackAttempt.state)).scalar_one()
                        return row if row not in M.MISSED_OPEN_STATES else None
                final = await _until("the callback settled", settled, 30)
                _resp, items = await cc.link.ami.send_action_list(
                    {"Action": "DBGetTree", "Family": LEDGER_FAMILY}, timeout=5)
                left = [i.get_first("Key") for i in items if prefix in (i.get_first("Key") or "")]
                await asyncio.sleep(2)  # a duration to wait out: a second callback would have started by now
                with session_scope(sessions) as s:
                    callbacks = s.execute(select(MissedCallback.caller_number, MissedCallback.reached)).all()
                    attempts = s.execute(select(MissedCallbackAttempt.id)).all()
                    listed = [m.number for m in missed_calls(s, domain.clock(), domain.policy)]
            finally:
                observer.close()
                if cc.link.connected:
                    await cc.queue.logout(OPERATOR)
                await cc.stop()
                engine.dispose()
        assert final == M.REACHED, (final, outputs, seen_standby)
        assert observer.dials == {prefix + key: 1}, observer.dials  # the citizen dialled exactly once
        assert [e["type"] for e in phone.events].count("CALL_ESTABLISHED") == 1  # the operator rung once
        assert callbacks == [(CITIZEN, True)] and len(attempts) == 1
        assert CITIZEN not in listed and left == []
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
