"""Listen, whisper, barge through the HTTP API with a fake PBX (issue 12 §5): who may join an
operator's call (R5.2, R6.1), a call about a discipline report (R7.3c), the mode switch and the
audit events (A1). tests/live/test_supervise_live.py runs the same against the real Asterisk."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from callcenter.callcontrol.supervise import Supervision
from callcenter.callcontrol.transfer import CallControl, Chan
from tests.test_transfer_api import _cheap_password_hashing  # noqa: F401  (autouse)
from tests.test_transfer_api import CITIZEN, OP1_CHAN, FakePbx, ok, refused
from ticketing import calls as call_log
from ticketing.models import AuditEvent, Case, User
from ticketing.store import session_scope

URL = "/api/v1/operators/8001/supervise"


class SpyPbx(FakePbx):
    """FakePbx with phones' channels; the supervisor's leg appears when originated."""

    async def endpoint_channels(self, endpoint):
        return [c for c in self.channels.values() if c.name.startswith(f"PJSIP/{endpoint}-")]

    async def call_endpoint_into_room(self, endpoint, room, context, ring_seconds):
        result = await super().call_endpoint_into_room(endpoint, room, context, ring_seconds)
        self.channels[result.uniqueid] = Chan(result.channel, result.uniqueid)
        return result


@pytest.fixture
def pbx(api, seeded, clock) -> SpyPbx:
    with session_scope(seeded) as s:
        for username, ext in (("op1", "8001"), ("op2", "8002"), ("sup1", "8091"), ("bo1", "8092"),
                              ("admin1", "8093"), ("disc1", "8094")):
            s.execute(select(User).where(User.username == username)).scalar_one().operator_extension = ext
    fake = SpyPbx()
    fake.add_call(CITIZEN, "PJSIP/trunk-00000009", OP1_CHAN)
    api.client.app.state.call_transfers = CallControl(fake, ring_seconds=1)
    api.client.app.state.supervision = Supervision(fake, ring_seconds=1, clock=clock)
    return fake


def leave(api, who: str):
    return api.client.delete(URL, headers={"Authorization": f"Bearer {api.login(who)}"})


def audit_events(seeded) -> list[tuple[str, str, dict, int | None]]:
    with session_scope(seeded) as s:
        rows = s.execute(select(AuditEvent).where(AuditEvent.action.like("supervise%"))
                         .order_by(AuditEvent.id)).scalars()
        return [(e.action, e.actor_name, e.data, e.call_id) for e in rows]


def log_call(seeded, clock, case_number: str | None = None) -> int:
    with session_scope(seeded) as s:
        call = call_log.call_row(s, uniqueid=CITIZEN, started_at=clock(), answered_at=clock())
        if case_number is not None:
            case_id = s.execute(select(Case.id).where(Case.number == case_number)).scalar_one()
            call_log.link_call(call, case_id=case_id)
        return call.id


def test_r5_2_supervisor_listens_whispers_barges_and_leaves_each_step_audited(api, pbx, seeded, clock):
    """R6.1/R5.2, A1: the supervisor's phone is rung into ChanSpy on the operator's phone; a mode
    switch moves that leg (no second ring); leaving hangs it up; start, switches and end (with the
    duration) are in the audit record, tied to the call."""
    call_id = log_call(seeded, clock)
    body = ok(api.post(URL, as_="sup1", json={"mode": "listen"}))
    assert body["mode"] == "listen" and body["operator"] == "8001"
    (_, endpoint, exten, context), = pbx.named("call_endpoint")
    assert (endpoint, exten, context) == ("op8091", "8001", "cc-spy-listen")
    spy_channel = body["channel"]
    assert spy_channel.startswith("PJSIP/op8091-")
    assert ok(api.get("/api/v1/supervise", as_="bo1")) == [body]

    clock.now += timedelta(seconds=30)
    assert ok(api.post(URL, as_="sup1", json={"mode": "whisper"}))["mode"] == "whisper"
    clock.now += timedelta(seconds=20)
    ok(api.post(URL, as_="sup1", json={"mode": "barge"}))
    assert [a[1:4] for a in pbx.named("redirect")] == [(spy_channel, "cc-spy-whisper", "8001"),
                                                       (spy_channel, "cc-spy-barge", "8001")]
    assert len(pbx.named("call_endpoint")) == 1  # switched, not rung again
    clock.now += timedelta(seconds=10)
    assert ok(leave(api, "sup1"))["seconds"] == 60
    assert pbx.named("hangup") == [("hangup", spy_channel)]
    assert ok(api.get("/api/v1/supervise", as_="sup1")) == []

    events = audit_events(seeded)
    assert [(a, who) for a, who, _, _ in events] == [("supervise_start", "sup1"), ("supervise_mode", "sup1"),
                                                     ("supervise_mode", "sup1"), ("supervise_end", "sup1")]
    assert all(cid == call_id for *_, cid in events)
    assert events[0][2] == {"operator": "8001", "mode": "listen", "supervisor_endpoint": "op8091"}
    assert [(d["from"], d["mode"]) for a, _, d, _ in events if a == "supervise_mode"] == [
        ("listen", "whisper"), ("whisper", "barge")]
    assert events[-1][2] == {"operator": "8001", "mode": "barge", "seconds": 60, "reason": "left"}


def test_r5_2_only_back_office_and_supervision_join_and_from_their_own_phone(api, pbx, seeded):
    """R5.2 (back office supervises the front desk), R6.1: operators, administrators, units and the
    discipline commission may not listen in; a supervisor without a phone is told so."""
    for who in ("op2", "admin1", "disc1", "water1"):
        refused(api.post(URL, as_=who, json={"mode": "listen"}), 403, "R5.2")
    with session_scope(seeded) as s:
        s.execute(select(User).where(User.username == "bo1")).scalar_one().operator_extension = None
    refused(api.post(URL, as_="bo1", json={"mode": "listen"}), 403, "operator_extension")
    assert pbx.named("call_endpoint") == [] and audit_events(seeded) == []
    # an operator who is not on a call: nothing to join
    refused(api.post("/api/v1/operators/8002/supervise", as_="sup1", json={"mode": "listen"}), 409, "call_state")
    # an unknown mode is invalid input
    assert api.post(URL, as_="sup1", json={"mode": "record"}).status_code == 422


def test_r7_3c_a_call_about_a_discipline_report_is_not_joined(api, pbx, seeded, clock):
    """R7.3c: the call is linked to an economic report on an official: supervision and the back
    office hear it neither recorded nor live (recording.may_listen, one rule); no ring, no event."""
    number = ok(api.post("/api/v1/cases", as_="op1", json={
        "kind": "complaint", "channel": "mobile", "category_code": "discipline_economic",
        "title": "举报某局长收受红包", "description": "某局长在工程招标中收受红包", "citizen_phone": "13812345678"}),
        201)["number"]
    with session_scope(seeded) as s:
        assert s.execute(select(Case.confidential).where(Case.number == number)).scalar_one()
    log_call(seeded, clock, number)
    for who in ("sup1", "bo1"):
        refused(api.post(URL, as_=who, json={"mode": "listen"}), 403, "R7.3c")
    assert pbx.named("call_endpoint") == [] and audit_events(seeded) == []


def test_a1_the_supervisors_leg_hanging_up_ends_the_session_once(api, pbx, seeded, clock):
    """A1: when the operator's call ends, ChanSpy ends the supervisor's leg; a later mode switch is
    410 and the session is gone (the AMI Hangup handler writes its end event, see the live test)."""
    body = ok(api.post(URL, as_="bo1", json={"mode": "barge"}))
    supervision = api.client.app.state.supervision
    uniqueid = next(iter(supervision.sessions))
    del pbx.channels[uniqueid]
    refused(api.post(URL, as_="bo1", json={"mode": "listen"}), 410, "call_ended")
    assert supervision.sessions == {}
    refused(leave(api, "bo1"), 409, "call_state")
    assert body["channel"] and [a for a, *_ in audit_events(seeded)] == ["supervise_start", "supervise_end"]
    assert audit_events(seeded)[-1][2]["reason"] == "hangup"
    # a supervisor on one call cannot start on another
    ok(api.post(URL, as_="sup1", json={"mode": "listen"}))
    pbx.add_call("1795600000.200", "PJSIP/trunk-0000000a", "PJSIP/op8002-00000002", bridge="b2")
    refused(api.post("/api/v1/operators/8002/supervise", as_="sup1", json={"mode": "listen"}), 409, "call_state")


async def test_a1_asterisk_hanging_up_the_supervisors_leg_writes_the_end_with_its_duration(api, pbx, seeded, clock):
    """A1: the operator's call ended (ChanSpy's E option hangs the supervisor's leg up): the AMI
    Hangup of that leg ends the session with its duration, once; other channels' hangups are ignored."""
    from callcenter.ami.protocol import Message
    from callcenter.api.routers.supervise import _on_hangup

    supervision = api.client.app.state.supervision
    spy = await supervision.start(api_actor(seeded, "sup1"), "op8091", "8001", "listen")
    handler = _on_hangup(supervision, seeded)
    clock.now += timedelta(seconds=42)
    await handler(Message([("Event", "Hangup"), ("Uniqueid", CITIZEN)]))
    await handler(Message([("Event", "Newexten"), ("Uniqueid", spy.uniqueid)]))
    assert supervision.sessions and audit_events(seeded) == []
    for _ in range(2):
        await handler(Message([("Event", "Hangup"), ("Uniqueid", spy.uniqueid)]))
    assert supervision.sessions == {}
    (action, who, data, _), = audit_events(seeded)
    assert (action, who, data) == ("supervise_end", "sup1",
                                   {"operator": "8001", "mode": "listen", "seconds": 42, "reason": "hangup"})


def api_actor(seeded, username: str):
    from callcenter.auth import actor_of

    with session_scope(seeded) as s:
        return actor_of(s.execute(select(User).where(User.username == username)).scalar_one())
