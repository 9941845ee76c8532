"""漏接回拨 (国办函〔2025〕66号; issue 14 item 4, the front desk's list): a caller who gives up in the
operator queue after a few seconds, with a number that can be called back, is on the list once
however often they gave up; off it when they get through or are reached by a callback. The queue
rows are the figures' own (ticketing/figures/calls.py). Clock: 2026-03-02 (the fixture) moved to
10:00 Shanghai; the list looks back 24 h."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tests.helpers import ok, refused, travel
from ticketing import calls as call_log
from ticketing.dialing import is_callable
from ticketing.models import AuditEvent, Call
from ticketing.store import session_scope

SH = ZoneInfo("Asia/Shanghai")


def t(hhmmss: str, day: int = 2) -> datetime:
    return datetime.fromisoformat(f"2026-03-{day:02d} {hhmmss}").replace(tzinfo=SH)


def _queued(s, uid: str, number: str, joined: str, *, left: str | None = None, answered: str | None = None,
            day: int = 2) -> None:
    """A hotline call that joined the operator queue and was abandoned (left) or answered there."""
    call_id = call_log.open_call(s, uniqueid=uid, started_at=t(joined, day), caller_number=number)
    call_log.finish_call(s, call_id, outcome="queued", ended_at=t(joined, day))
    row = s.get(Call, call_id)
    events = [("queued", joined, {})]
    if left:
        events.append(("queue_abandoned", left, {}))
    if answered:
        events.append(("operator_connected", answered, {"holdtime": 3, "operator": "8001"}))
    for kind, at, data in events:
        call_log.add_event(s, call_id, kind=kind, at=t(at, day), dedup_key=f"ami:{kind}:{uid}", data=data)
        call_log.apply_event(row, kind, at=t(at, day), uniqueid=uid)
    s.flush()


def test_the_numbers_the_hotline_can_call_back():
    assert all(map(is_callable, ["13812345678", "+8613812345678", "051087654321", "0510-87654321", "87654321"]))
    assert not any(map(is_callable, ["", "anonymous", "12345", "110", "138123456789", "+1 555 0100"]))


def test_who_is_on_the_missed_call_list_and_when_they_leave_it(api, seeded, clock):
    clock.set("2026-03-02T10:00:00")
    with session_scope(seeded) as s:
        _queued(s, "a1", "13800000001", "09:00:00", left="09:00:30")      # 30 s: on the list
        _queued(s, "a2", "13800000001", "09:20:00", left="09:20:08")      # again: the same entry, twice
        _queued(s, "b1", "13800000002", "09:10:00", left="09:10:03")      # 3 s < 5 s: a slip, not a miss
        _queued(s, "c1", "13800000003", "09:15:00", left="09:15:40")      # got through later: off
        _queued(s, "c2", "13800000003", "09:30:00", answered="09:30:03")
        _queued(s, "d1", "anonymous", "09:16:00", left="09:17:00")        # withheld: nobody to call
        _queued(s, "e1", "13800000005", "09:00:00", left="09:01:00", day=1)  # 25 h ago: out of the window
        _queued(s, "f1", "13800000006", "09:40:00", left="09:41:00")

    rows = ok(api.get("/api/v1/missed-calls", "op1"))
    assert [(r["number"], r["times"], r["longest_wait_s"], r["tries"]) for r in rows] == [
        ("13800000001", 2, 30.0, 0), ("13800000006", 1, 60.0, 0)]
    assert rows[0]["first_at"] == "2026-03-02T01:00:00Z" and rows[0]["last_at"] == "2026-03-02T01:20:00Z"
    refused(api.get("/api/v1/missed-calls", "water1"), 403, "R5.1")

    # Called back but not reached: stays, with the try counted; reached: off the list.
    ok(api.post("/api/v1/missed-calls/13800000001/callback", "op1", json={"reached": False, "note": "无人接听"}))
    assert [(r["number"], r["tries"]) for r in ok(api.get("/api/v1/missed-calls", "op1"))] == [
        ("13800000001", 1), ("13800000006", 0)]
    ok(api.post("/api/v1/missed-calls/13800000001/callback", "op2", json={"reached": True}))
    assert [r["number"] for r in ok(api.get("/api/v1/missed-calls", "bo1"))] == ["13800000006"]

    # Giving up again after the callback puts the number back, as one new entry.
    clock.set("2026-03-02T11:00:00")
    with session_scope(seeded) as s:
        _queued(s, "a3", "13800000001", "10:30:00", left="10:30:20")
    assert [(r["number"], r["times"]) for r in ok(api.get("/api/v1/missed-calls", "op1"))] == [
        ("13800000006", 1), ("13800000001", 1)]

    refused(api.post("/api/v1/missed-calls/110/callback", "op1", json={"reached": True}), 422, "number")
    refused(api.post("/api/v1/missed-calls/13800000006/callback", "water1", json={"reached": True}), 403, "R5.1")
    with session_scope(seeded) as s:
        actions = [(e.actor_name, e.data["reached"]) for e in s.query(AuditEvent)
                   .filter(AuditEvent.action == "missed_call_callback").order_by(AuditEvent.id)]
    assert actions == [("op1", False), ("op2", True)]
    travel(api, clock, "2026-03-03T10:00:00")  # 23.5 h after the 10:30 miss: still within 24 h
    assert [r["number"] for r in ok(api.get("/api/v1/missed-calls", "op1"))] == ["13800000001"]
    clock.now += timedelta(hours=1)
    api.tokens.clear()
    assert ok(api.get("/api/v1/missed-calls", "op1")) == []
