"""Notices delivered, not only recorded (issue 14 item 5): an R7.7 urge rings the unit's A duty
phone, then B if A does not answer (the phones a warm transfer rings); key 1 is recorded against the
urge (the notice delivered, an audit event); no answer is tried again after `retry_minutes`, at most
`max_tries`; only within calling hours; a killed runner's call is settled by Asterisk's ledger,
never placed twice. Against an in-memory PBX; on the real Asterisk: tests/live/test_notify_live.py.
Clock: 2026-03-02 10:00 Shanghai (SQLite and PostgreSQL)."""
from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import select

from callback import notify as N
from callback.notify_runner import NoticeOptions, NoticeRunner
from callback.pbx import ANSWERED, NOT_ANSWERED, DialResult, NotSent
from tests.live.callback_helpers import BACK_OFFICE
from ticketing.audit import SYSTEM
from ticketing.enums import CaseKind, Channel
from ticketing.models import AuditEvent, UnitNotification
from ticketing.notification_model import NotificationDelivery
from ticketing.store import session_scope

A_PHONE, B_PHONE = "13900002902", "13900002903"  # water_supply's duty A and B (config/units.yaml)
OPTS = NoticeOptions(settle_seconds=0, end_grace=0.05, check_seconds=0.05)


class FakeNoticePbx:
    """Like `[outbound-callback]`: the ledger entry before the duty phone rings; an answering phone
    runs the flow (`press(key)` stands for ivr/notify's key 1, or nothing), then the call hangs up."""

    def __init__(self, answering=(A_PHONE, B_PHONE), press=None) -> None:
        self.connected = True
        self.answering = set(answering)
        self.press = press
        self.hold = False
        self.rings: list[tuple[str, str, dict]] = []   # (phone, channel id, facts)
        self.dials: Counter[str] = Counter()
        self.ledger: set[str] = set()
        self.up: set[str] = set()
        self._hangups: list = []
        self._release = asyncio.Event()

    def originate_notice(self, *, phone, key, channel_id, context, caller_id, ring_timeout, facts):
        if not self.connected:
            raise NotSent("link down")
        self.rings.append((phone, channel_id, facts))
        answer = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().create_task(self._call(phone, key, channel_id, answer))
        return answer

    async def _call(self, phone, key, chan, answer) -> None:
        await asyncio.sleep(0)
        self.ledger.add(chan)
        self.dials[chan] += 1
        if phone not in self.answering:
            answer.set_result(DialResult(NOT_ANSWERED, reason=3))
            return
        self.up.add(chan)
        answer.set_result(DialResult(ANSWERED))
        if self.hold:
            await self._release.wait()
        if self.press is not None:
            await asyncio.to_thread(self.press, key)
        self.up.discard(chan)
        for cb in list(self._hangups):
            cb(chan)

    def on_hangup(self, callback):
        self._hangups.append(callback)
        return type("Sub", (), {"close": lambda _self: None})()

    async def channels_up(self, timeout: float) -> set[str]:
        return set(self.up)

    async def ledger_has(self, channel_id: str, timeout: float) -> bool:
        return channel_id in self.ledger

    async def ledger_forget(self, channel_id: str, timeout: float) -> None:
        self.ledger.discard(channel_id)


def _urged(seeded, domain, clock) -> int:
    clock.set("2026-03-02T10:00:00")
    with session_scope(seeded) as s:
        wf = domain.workflow(s)
        case = wf.accept(SYSTEM, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE, title="水压低",
                         description="三楼以上没水", citizen_phone="13800000001")
        (wo,) = wf.dispatch(BACK_OFFICE, case, units=["water_supply"])
        notice = wf.urge(BACK_OFFICE, wo, note="请尽快办理")
        s.flush()
        return notice.id


def _key_one(seeded, domain):
    def press(key: str) -> None:
        with session_scope(seeded) as s:
            assert N.acknowledge(s, domain, key)
    return press


def _delivery(seeded) -> NotificationDelivery:
    with session_scope(seeded) as s:
        d = s.execute(select(NotificationDelivery)).scalar_one()
        s.expunge(d)
        return d


async def test_r7_7_an_urge_rings_the_a_duty_phone_and_key_1_is_recorded_against_it(seeded, domain, clock):
    notice_id = _urged(seeded, domain, clock)
    pbx = FakeNoticePbx(press=_key_one(seeded, domain))
    runner = NoticeRunner(domain, seeded, pbx, OPTS)
    await runner.drain(timeout=10, poll=0.01)
    await runner.stop()
    assert [phone for phone, _c, _f in pbx.rings] == [A_PHONE]
    facts = pbx.rings[0][2]
    assert facts["case_number"] and facts["due_date"].startswith("2026-") and facts["due_hour"].isdigit()
    d = _delivery(seeded)
    assert (d.state, d.target_role, d.tries, d.acknowledged_at is not None) == (N.ACKNOWLEDGED, "A", 0, True)
    with session_scope(seeded) as s:
        assert s.get(UnitNotification, notice_id).delivered is True
        events = s.execute(select(AuditEvent.action).where(AuditEvent.action == "urge_acknowledged")).scalars().all()
        assert events == ["urge_acknowledged"]
        assert N.plan(s, domain) == 0  # planned once: a repeated plan adds nothing
        assert N.acknowledge(s, domain, d.idempotency_key)  # a second key 1 changes nothing
        assert len(s.execute(select(AuditEvent.id).where(AuditEvent.action == "urge_acknowledged")).all()) == 1
    assert not pbx.ledger  # settled: Asterisk's ledger entry went


async def test_r5_3_b_is_rung_when_a_does_not_answer(seeded, domain, clock):
    _urged(seeded, domain, clock)
    pbx = FakeNoticePbx(answering=(B_PHONE,), press=_key_one(seeded, domain))
    runner = NoticeRunner(domain, seeded, pbx, OPTS)
    await runner.drain(timeout=10, poll=0.01)
    await runner.stop()
    assert [phone for phone, _c, _f in pbx.rings] == [A_PHONE, B_PHONE]
    assert len({chan for _p, chan, _f in pbx.rings}) == 2  # a new key (ledger entry) per try
    d = _delivery(seeded)
    assert (d.state, d.target_role, d.tries) == (N.ACKNOWLEDGED, "B", 1)


async def test_unacknowledged_notices_are_retried_after_a_while_at_most_max_tries(seeded, domain, clock):
    _urged(seeded, domain, clock)
    pbx = FakeNoticePbx(press=None)  # answered, no key 1
    runner = NoticeRunner(domain, seeded, pbx, OPTS)
    await runner.drain(timeout=10, poll=0.01)
    assert [phone for phone, _c, _f in pbx.rings] == [A_PHONE, B_PHONE]  # one round, then a pause
    clock.advance(minutes=domain.policy.notifications.retry_minutes - 1)
    await runner.sweep()
    assert len(pbx.rings) == 2
    clock.advance(minutes=2)
    await runner.drain(timeout=10, poll=0.01)
    clock.advance(hours=1)
    await runner.drain(timeout=10, poll=0.01)
    await runner.stop()
    assert len(pbx.rings) == domain.policy.notifications.max_tries == 4
    d = _delivery(seeded)
    assert (d.state, d.tries) == (N.FAILED, 4)
    with session_scope(seeded) as s:
        assert s.execute(select(UnitNotification.delivered)).scalar_one() is False  # recorded, not delivered


async def test_no_notice_calls_outside_calling_hours(seeded, domain, clock):
    _urged(seeded, domain, clock)
    clock.set("2026-03-02T23:30:00")
    pbx = FakeNoticePbx()
    runner = NoticeRunner(domain, seeded, pbx, OPTS)
    await runner.sweep()
    await runner.stop()
    assert pbx.rings == []
    assert _delivery(seeded).state == N.SCHEDULED


async def test_a_killed_runner_s_call_is_settled_from_the_ledger_and_never_placed_twice(seeded, domain, clock):
    _urged(seeded, domain, clock)
    pbx = FakeNoticePbx(press=None)
    pbx.hold = True
    first = NoticeRunner(domain, seeded, pbx, OPTS)
    await first.sweep()
    await asyncio.sleep(0.05)
    for task in list(first._tasks.values()):  # the process dies: its call goes on in Asterisk
        task.cancel()
    await asyncio.gather(*first._tasks.values(), return_exceptions=True)
    assert _delivery(seeded).state == N.ANSWERED
    pbx.press = _key_one(seeded, domain)
    second = NoticeRunner(domain, seeded, pbx, OPTS)
    await second.sweep()  # adopts the call still up, places nothing
    assert len(pbx.rings) == 1
    pbx._release.set()
    await second.drain(timeout=10, poll=0.01)
    await second.stop()
    assert len(pbx.rings) == 1 and list(pbx.dials.values()) == [1]
    assert _delivery(seeded).state == N.ACKNOWLEDGED


async def test_a_try_dialled_by_a_dead_runner_counts_and_one_never_dialled_goes_again_same_key(seeded, domain, clock):
    _urged(seeded, domain, clock)
    with session_scope(seeded) as s:
        N.plan(s, domain)
        claimed = N.claim(s, domain)  # committed `dialing`, then the process died
    pbx = FakeNoticePbx(press=_key_one(seeded, domain))
    runner = NoticeRunner(domain, seeded, pbx, OPTS)
    await runner.reconcile()  # no channel, no ledger entry: never dialled
    d = _delivery(seeded)
    assert (d.state, d.idempotency_key, d.tries) == (N.SCHEDULED, claimed.key, 0)
    with session_scope(seeded) as s:
        claimed = N.claim(s, domain)
    pbx.ledger.add(claimed.key)  # this time the dialplan had dialled A before the crash
    await runner.reconcile()
    d = _delivery(seeded)
    assert (d.state, d.tries) == (N.SCHEDULED, 1) and d.idempotency_key != claimed.key
    await runner.drain(timeout=10, poll=0.01)
    await runner.stop()
    assert [phone for phone, _c, _f in pbx.rings] == [B_PHONE]
    assert _delivery(seeded).state == N.ACKNOWLEDGED
