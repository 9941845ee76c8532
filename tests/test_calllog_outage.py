"""A2 through a store outage (issue 16 item 2): the live call log keeps what Asterisk reports while
the store is unreachable and writes it, exactly once, when the store is back; a bad entry is still
dropped at once (it would block the log forever)."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from callcenter.callcontrol import calllog as calllog_module
from callcenter.callcontrol.calllog import CallLog, store_unreachable
from callcenter.callcontrol.cel import LogEntry
from ticketing.models import Call, CallEvent
from ticketing.store import session_scope

AT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


class Outage:
    """A session factory whose store refuses the next `down` connections."""

    def __init__(self, real, down: int) -> None:
        self.real, self.down, self.refused = real, down, 0

    def __call__(self):
        if self.down > 0:
            self.down -= 1
            self.refused += 1
            raise OperationalError("connect", {}, ConnectionRefusedError("store restarting"))
        return self.real()


def _entries(uid: str) -> list[LogEntry]:
    return [
        LogEntry(linkedid=uid, uniqueid=uid, kind="queued", at=AT, dedup_key=f"ami:queued:{uid}:1",
                 data={"queue": "hotline-12345", "reason": "agi-incomplete", "caller_number": "13800000001"},
                 create_call=True),
        LogEntry(linkedid=uid, uniqueid=uid, kind="queue_abandoned", at=AT + timedelta(seconds=9),
                 dedup_key=f"ami:queue_abandoned:{uid}:2", data={"queue": "hotline-12345"}),
    ]


async def test_a2_call_log_entries_survive_a_store_outage_exactly_once(sessions, monkeypatch):
    monkeypatch.setattr(calllog_module, "RETRY_MAX_S", 0.05)
    outage = Outage(sessions, down=4)
    log = CallLog(outage, "hotline-12345")
    log.start()
    try:
        for uid in ("1700000000.1", "1700000000.2"):
            for entry in _entries(uid):
                log.add(entry)
        assert await log.flush(timeout=10)
        for entry in _entries("1700000000.1"):  # the same facts again (a replay after reconnecting)
            log.add(entry)
        assert await log.flush(timeout=10)
    finally:
        await log.stop()
    assert outage.refused == 4 and log.stats.store_retries == 4
    with session_scope(sessions) as s:
        calls = s.execute(select(Call).order_by(Call.uniqueid)).scalars().all()
        assert [(c.uniqueid, c.outcome, c.outcome_reason) for c in calls] == [
            ("1700000000.1", "abandoned", "caller_hung_up_in_queue"),
            ("1700000000.2", "abandoned", "caller_hung_up_in_queue")]
        events = s.execute(select(CallEvent.kind)).scalars().all()
        assert sorted(events) == ["queue_abandoned"] * 2 + ["queued"] * 2


async def test_a2_a_bad_entry_is_dropped_not_retried(sessions):
    class Broken:
        calls = 0

        def __call__(self):
            Broken.calls += 1
            raise IntegrityError("insert", {}, ValueError("bad row"))

    log = CallLog(Broken(), "hotline-12345")
    log.start()
    try:
        log.add(_entries("1700000000.3")[0])
        assert await asyncio.wait_for(log.flush(timeout=5), 6)
    finally:
        await log.stop()
    assert Broken.calls == 1 and log.stats.store_retries == 0


def test_store_unreachable_tells_outages_from_bad_data():
    assert store_unreachable(OperationalError("SELECT 1", {}, ConnectionResetError()))
    assert not store_unreachable(IntegrityError("INSERT", {}, ValueError()))
    assert not store_unreachable(ValueError("no"))


class FileRecords:
    """A CEL source holding what Asterisk wrote to its CEL file while nobody logged."""

    def __init__(self, records: list[dict[str, str]]) -> None:
        self.records = records

    def read_new(self, since):
        records, self.records = self.records, []
        return records


def _cel(event: str, second: int, uid: str, linked: str, channel: str, extra: str = "") -> dict[str, str]:
    return {"eventtype": event, "eventtime": f"2026-03-02 01:00:{second:02d}.000000", "uniqueid": uid,
            "linkedid": linked, "channame": channel, "appname": "", "extra": extra}


async def test_a2_calls_the_hotline_never_saw_are_completed_from_the_cel_file(sessions):
    """The hotline was down while citizens called: from Asterisk's CEL file, each trunk call gets its
    record (no number: the file holds none), answered when an operator's leg entered its bridge,
    abandoned when it ended unanswered; a call seen queued at the resync is not recorded twice, and
    an operator's own call (not from the trunk) gets no record."""
    log = CallLog(sessions, "hotline-12345")
    log.start()
    try:
        from callcenter.callcontrol.state import QueueCaller

        log.queue_seen([QueueCaller("1700000001.3", "1700000001.3", "PJSIP/trunk-00000003", "13800000003",
                                    joined_at=AT.timestamp() + 2)])
        await log.flush()
        written = await log.reconcile(FileRecords([
            _cel("CHAN_START", 1, "1700000001.1", "1700000001.1", "PJSIP/trunk-00000001"),
            _cel("CHAN_START", 2, "1700000001.5", "1700000001.1", "PJSIP/op8001-00000005"),
            _cel("BRIDGE_ENTER", 3, "1700000001.5", "1700000001.1", "PJSIP/op8001-00000005",
                 '{"bridge_id":"b1","bridge_technology":"simple_bridge"}'),
            _cel("HANGUP", 9, "1700000001.1", "1700000001.1", "PJSIP/trunk-00000001"),
            _cel("LINKEDID_END", 9, "1700000001.1", "1700000001.1", "PJSIP/trunk-00000001"),
            _cel("CHAN_START", 4, "1700000001.2", "1700000001.2", "PJSIP/trunk-00000002"),
            _cel("LINKEDID_END", 8, "1700000001.2", "1700000001.2", "PJSIP/trunk-00000002"),
            _cel("CHAN_START", 1, "1700000001.3", "1700000001.3", "PJSIP/trunk-00000003"),
            _cel("LINKEDID_END", 7, "1700000001.3", "1700000001.3", "PJSIP/trunk-00000003"),
            _cel("CHAN_START", 5, "1700000001.4", "1700000001.4", "PJSIP/op8002-00000004"),
            _cel("LINKEDID_END", 6, "1700000001.4", "1700000001.4", "PJSIP/op8002-00000004"),
        ]))
        assert written > 0
        log.queue_seen([QueueCaller("1700000001.3", "1700000001.3", "PJSIP/trunk-00000003", "13800000003",
                                    joined_at=AT.timestamp() + 2)])  # seen again at a later resync
        await log.flush()
    finally:
        await log.stop()
    with session_scope(sessions) as s:
        calls = {c.uniqueid: c for c in s.execute(select(Call)).scalars()}
        assert sorted(calls) == ["1700000001.1", "1700000001.2", "1700000001.3"]
        got = {uid: (c.outcome, c.outcome_reason, c.caller_number) for uid, c in calls.items()}
        assert got == {"1700000001.1": ("answered", None, ""),
                       "1700000001.2": ("abandoned", "ended_unobserved", ""),
                       "1700000001.3": ("abandoned", "caller_hung_up_in_queue", "13800000003")}
        assert all(c.ended_at is not None for c in calls.values())
        queued = s.execute(select(CallEvent).where(CallEvent.kind == "queued")).scalars().all()
        assert [e.call_id for e in queued] == [calls["1700000001.3"].id]


async def test_a2_the_menu_outcome_stays_when_the_call_end_comes_first(sessions):
    """The call's end closes only a record still open: a menu that finished (self-served) keeps its outcome."""
    from ticketing import calls as call_rules

    with session_scope(sessions) as s:
        call = s.get(Call, call_rules.open_call(s, uniqueid="1700000002.1", started_at=AT, caller_number="13800000009"))
        call_rules.finish_call(s, call.id, outcome="self_served", ended_at=AT + timedelta(seconds=20))
    log = CallLog(sessions, "hotline-12345")
    log.start()
    try:
        await log.reconcile(FileRecords([_cel("LINKEDID_END", 30, "1700000002.1", "1700000002.1",
                                              "PJSIP/trunk-00000009")]))
    finally:
        await log.stop()
    with session_scope(sessions) as s:
        call = s.execute(select(Call)).scalar_one()
        assert (call.outcome, call.caller_number) == ("self_served", "13800000009")


async def test_a2_an_operator_answer_logged_after_the_call_end_still_answers_it(sessions):
    """After an outage the live events of the restarted hotline may log a call's end before the CEL
    backlog brings its earlier answer (an operator's leg entering the call's bridge while the hotline
    was down): the answer, which came first, still makes the call answered, not abandoned; an
    operator's leg entering after the end changes nothing."""
    log = CallLog(sessions, "hotline-12345")
    log.start()
    try:
        await log.reconcile(FileRecords([
            _cel("CHAN_START", 1, "1700000003.1", "1700000003.1", "PJSIP/trunk-00000011"),
            _cel("LINKEDID_END", 30, "1700000003.1", "1700000003.1", "PJSIP/trunk-00000011"),
            _cel("CHAN_START", 1, "1700000003.7", "1700000003.7", "PJSIP/trunk-00000017"),
            _cel("LINKEDID_END", 20, "1700000003.7", "1700000003.7", "PJSIP/trunk-00000017"),
        ]))
        await log.reconcile(FileRecords([
            _cel("BRIDGE_ENTER", 5, "1700000003.2", "1700000003.1", "PJSIP/op8001-00000012",
                 '{"bridge_id":"b3","bridge_technology":"simple_bridge"}'),
            _cel("BRIDGE_ENTER", 25, "1700000003.8", "1700000003.7", "PJSIP/op8002-00000018",
                 '{"bridge_id":"b4","bridge_technology":"simple_bridge"}'),
        ]))
    finally:
        await log.stop()
    with session_scope(sessions) as s:
        got = {c.uniqueid: (c.outcome, c.outcome_reason) for c in s.execute(select(Call)).scalars()}
    assert got == {"1700000003.1": ("answered", None), "1700000003.7": ("abandoned", "ended_unobserved")}
