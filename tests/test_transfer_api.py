"""Call control through the HTTP API with a fake PBX: warm transfer (A then B duty phone), three-way
call, convenience transfer (R7.3f), who may act on a call, and recordings (issue 4 §4-7).

The fake PBX keeps channels and bridges in memory and records every action, so each test proves
what was (not) asked of Asterisk; tests/live/test_transfer_live.py and test_conference_live.py run
the same operations against the real Asterisk with SIP phones.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

import callcenter.auth as auth_module
from callcenter.callcontrol import recording
from callcenter.callcontrol.transfer import CallControl, Chan, DialResult
from ticketing.models import Call, CallEvent, Case, User, WorkOrder
from ticketing.store import session_scope

CITIZEN = "1795600000.100"
OP1_CHAN = "PJSIP/op8001-00000001"
WATER_A, WATER_B = "13900002902", "13900002903"
CONVENIENCE_LINE = "051087900350"


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch):
    monkeypatch.setattr(auth_module, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


class FakePbx:
    """Channels {uniqueid: Chan}; dial results by number (default: answered); actions recorded."""

    def __init__(self) -> None:
        self.channels: dict[str, Chan] = {}
        self.answers: dict[str, str] = {}  # number -> reason (answered | no_answer | busy ...)
        self.actions: list[tuple] = []
        self.rooms: dict[str, list[str]] = {}
        self._n = 0

    def add_call(self, uniqueid: str, citizen: str, operator_chan: str, bridge: str = "b1") -> None:
        self.channels[uniqueid] = Chan(citizen, uniqueid, bridge)
        self.channels[f"op-{uniqueid}"] = Chan(operator_chan, f"op-{uniqueid}", bridge)

    async def channel(self, uniqueid):
        return self.channels.get(uniqueid)

    async def bridge_peers(self, chan):
        return [c for c in self.channels.values() if c.bridge_id and c.bridge_id == chan.bridge_id
                and c.uniqueid != chan.uniqueid]

    async def redirect(self, channel, context, exten, extra=None):
        self.actions.append(("redirect", channel, context, exten, extra))

    async def hangup(self, channel):
        self.actions.append(("hangup", channel))

    async def dial_into_room(self, number, room, ring_seconds):
        self.actions.append(("dial", number, room))
        reason = self.answers.get(number, "answered")
        if reason != "answered":
            return DialResult(False, reason)
        self._n += 1
        chan = f"Local/{number}@unit-phones-{self._n:08x};1"
        self.rooms.setdefault(room, []).append(chan)
        return DialResult(True, "answered", chan, f"u{self._n}")

    async def call_endpoint_into_room(self, endpoint, room, context, ring_seconds):
        self.actions.append(("call_endpoint", endpoint, room, context))
        self._n += 1
        return DialResult(True, "answered", f"PJSIP/{endpoint}-{self._n:08x}", f"o{self._n}")

    async def room_members(self, room):
        return list(self.rooms.get(room, []))

    def named(self, kind):
        return [a for a in self.actions if a[0] == kind]


@pytest.fixture
def pbx(api, seeded) -> FakePbx:
    with session_scope(seeded) as s:
        for username, ext in (("op1", "8001"), ("op2", "8002")):
            s.execute(select(User).where(User.username == username)).scalar_one().operator_extension = ext
    fake = FakePbx()
    fake.add_call(CITIZEN, "PJSIP/trunk-00000009", OP1_CHAN)
    api.client.app.state.call_transfers = CallControl(fake, ring_seconds=1)
    return fake


def ok(r, status=200):
    assert r.status_code == status, r.text
    return r.json()


def refused(r, status, rule):
    assert r.status_code == status, r.text
    assert r.json()["error"] == rule, r.json()
    return r.json()


def new_case(api, kind="urgent_help", as_="op1") -> str:
    return ok(api.post("/api/v1/cases", as_=as_, json={
        "kind": kind, "channel": "mobile", "title": "自来水管爆裂", "description": "小区主水管爆裂，急需抢修",
        "citizen_phone": "13812345678"}), 201)["number"]


def events(seeded, uniqueid=CITIZEN) -> list[tuple[str, dict]]:
    with session_scope(seeded) as s:
        call = s.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one()
        return [(e.kind, e.data) for e in s.execute(
            select(CallEvent).where(CallEvent.call_id == call.id).order_by(CallEvent.id)).scalars()]


def work_orders(seeded, number) -> list[tuple[str, str, str]]:
    with session_scope(seeded) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        return [(wo.unit.code, wo.mode.value, wo.status.value) for wo in
                s.execute(select(WorkOrder).where(WorkOrder.case_id == case.id)).scalars()]


# --------------------------------------------------------------------------------------------
# warm transfer


def test_warm_transfer_rings_b_when_a_does_not_answer_and_logs_every_attempt(api, pbx, seeded):
    number = new_case(api)
    pbx.answers[WATER_A] = "no_answer"
    body = ok(api.post(f"/api/v1/calls/{CITIZEN}/transfer", as_="op1",
                       json={"case_number": number, "unit": "water_supply"}))
    assert body["state"] == "consulting"
    assert body["connected"] == {"unit": "water_supply", "duty": "B"}
    # the citizen goes on hold in the call's room, the operator to a private room with the unit
    (_, chan, ctx, room, extra), = pbx.named("redirect")
    assert (chan, ctx) == ("PJSIP/trunk-00000009", "cc-room-citizen") and room == body["room"]
    assert extra[0] == OP1_CHAN and extra[1] == "cc-room-operator" and extra[2] != room
    assert [a[1] for a in pbx.named("dial")] == [WATER_A, WATER_B]
    assert all(a[2] == extra[2] for a in pbx.named("dial"))
    log = events(seeded)
    kinds = [k for k, _ in log]
    assert kinds[:6] == ["hold", "unit_dial", "unit_dial_result", "unit_dial", "unit_dial_result", "consult"]
    results = [(d["duty"], d["result"]) for k, d in log if k == "unit_dial_result"]
    assert results == [("A", "no_answer"), ("B", "answered")]
    # numbers never in the call log in clear, masked by the one rule (ticketing.privacy)
    assert all(WATER_A not in str(d) and WATER_B not in str(d) for _, d in log)
    assert [d["number"] for k, d in log if k == "unit_dial"] == ["139****2902", "139****2903"]
    assert work_orders(seeded, number) == []  # nothing dispatched until the unit takes the call

    done = ok(api.post(f"/api/v1/calls/{CITIZEN}/transfer/complete", as_="op1"))
    assert done["state"] == "transferred"
    redirect = pbx.named("redirect")[-1]
    assert redirect[1].startswith(f"Local/{WATER_B}@unit-phones") and redirect[2:4] == ("cc-room-unit", room)
    assert redirect[4] == (OP1_CHAN, "cc-hangup", "s")
    assert work_orders(seeded, number) == [("water_supply", "transfer", "notified")]
    assert events(seeded)[-1][0] == "transfer_completed"
    # A1: the dispatch names the call it was made on
    case = ok(api.get(f"/api/v1/cases/{number}", as_="op1"))
    assert case["status"] == "dispatched"


def test_cancelled_warm_transfer_returns_the_operator_to_the_citizen(api, pbx, seeded):
    number = new_case(api)
    body = ok(api.post(f"/api/v1/calls/{CITIZEN}/transfer", as_="op1",
                       json={"case_number": number, "unit": "water_supply"}))
    assert body["connected"] == {"unit": "water_supply", "duty": "A"}
    back = ok(api.post(f"/api/v1/calls/{CITIZEN}/transfer/cancel", as_="op1"))
    assert back["state"] == "talking"
    (_, unit_chan), = pbx.named("hangup")
    assert unit_chan.startswith(f"Local/{WATER_A}@unit-phones")
    assert pbx.named("redirect")[-1][1:4] == (OP1_CHAN, "cc-room-operator", body["room"])
    assert [k for k, _ in events(seeded)][-2:] == ["transfer_cancelled", "unhold"]
    assert work_orders(seeded, number) == []
    # a completed transfer needs one in progress
    refused(api.post(f"/api/v1/calls/{CITIZEN}/transfer/complete", as_="op1"), 409, "call_state")


def test_nobody_at_the_unit_answers_the_operator_is_back_with_the_citizen(api, pbx, seeded):
    number = new_case(api)
    pbx.answers.update({WATER_A: "no_answer", WATER_B: "busy"})
    body = ok(api.post(f"/api/v1/calls/{CITIZEN}/transfer", as_="op1",
                       json={"case_number": number, "unit": "water_supply"}))
    assert body["state"] == "talking" and body["connected"] is None
    assert pbx.named("redirect")[-1][1:4] == (OP1_CHAN, "cc-room-operator", body["room"])
    results = [(d["duty"], d["result"]) for k, d in events(seeded) if k == "unit_dial_result"]
    assert results == [("A", "no_answer"), ("B", "busy")]
    assert "transfer_failed" in [k for k, _ in events(seeded)]


# --------------------------------------------------------------------------------------------
# who may act on a call: 403 / 404 / 410


def test_another_operator_may_not_act_on_the_call(api, pbx, seeded):
    number = new_case(api, as_="op2")
    r = api.post(f"/api/v1/calls/{CITIZEN}/transfer", as_="op2", json={"case_number": number, "unit": "water_supply"})
    body = refused(r, 403, "call_owner")
    assert "another operator" in body["detail"]
    assert pbx.actions == []  # nothing moved, nothing dialled
    refused(api.post(f"/api/v1/calls/{CITIZEN}/conference", as_="op2",
                     json={"case_number": number, "unit": "water_supply"}), 403, "call_owner")
    # once op1 has taken control, op2 is still refused
    number1 = new_case(api)
    ok(api.post(f"/api/v1/calls/{CITIZEN}/conference", as_="op1", json={"case_number": number1, "unit": "water_supply"}))
    refused(api.post(f"/api/v1/calls/{CITIZEN}/conference/leave", as_="op2"), 403, "call_owner")
    # not an operator at all
    refused(api.post(f"/api/v1/calls/{CITIZEN}/conference/leave", as_="bo1"), 403, "R5.1")


def test_unknown_channel_is_404_and_hung_up_call_is_410(api, pbx, seeded):
    number = new_case(api)
    body = refused(api.post("/api/v1/calls/1795600000.999/transfer", as_="op1",
                            json={"case_number": number, "unit": "water_supply"}), 404, "call_unknown")
    assert "1795600000.999" in body["detail"]
    # a call op1 controlled, then the citizen hung up
    ok(api.post(f"/api/v1/calls/{CITIZEN}/transfer", as_="op1", json={"case_number": number, "unit": "water_supply"}))
    del pbx.channels[CITIZEN]
    refused(api.post(f"/api/v1/calls/{CITIZEN}/transfer/cancel", as_="op1"), 410, "call_ended")
    # a call only the call log knows (logged by the IVR), gone from the PBX
    with session_scope(seeded) as s:
        from ticketing.calls import call_row
        call_row(s, uniqueid="1795600000.500", started_at=api.client.app.state.domain.clock())
    refused(api.post("/api/v1/calls/1795600000.500/conference", as_="op1",
                     json={"case_number": number, "unit": "water_supply"}), 410, "call_ended")
    # a malformed id never reaches the PBX
    assert api.post("/api/v1/calls/a%20b/transfer/cancel", as_="op1").status_code == 422
    assert len(pbx.named("redirect")) == 1


def test_call_not_yet_with_an_operator_is_409(api, pbx, seeded):
    pbx.channels["1795600000.300"] = Chan("PJSIP/trunk-0000000a", "1795600000.300", "")
    refused(api.post("/api/v1/calls/1795600000.300/transfer/cancel", as_="op1"), 409, "call_state")


# --------------------------------------------------------------------------------------------
# three-way call


def test_r7_3e_r7_4_three_way_call_operator_leaves_rejoins_and_rates_it_live(api, pbx, seeded):
    number = new_case(api)
    body = ok(api.post(f"/api/v1/calls/{CITIZEN}/conference", as_="op1",
                       json={"case_number": number, "unit": "water_supply"}))
    assert body["state"] == "conference" and body["connected"] == {"unit": "water_supply", "duty": "A"}
    (_, chan, ctx, room, extra), = pbx.named("redirect")
    assert (ctx, extra[1], extra[2]) == ("cc-room-citizen", "cc-room-operator", room)  # same room
    assert pbx.named("dial") == [("dial", WATER_A, room)]
    assert work_orders(seeded, number) == [("water_supply", "three_way", "notified")]
    members = ok(api.get(f"/api/v1/calls/{CITIZEN}/conference", as_="op1"))["members"]
    assert len(members) == 1 and members[0].startswith(f"Local/{WATER_A}")

    left = ok(api.post(f"/api/v1/calls/{CITIZEN}/conference/leave", as_="op1"))
    assert left["operator_in_call"] is False and pbx.named("hangup") == [("hangup", OP1_CHAN)]
    refused(api.post(f"/api/v1/calls/{CITIZEN}/conference/leave", as_="op1"), 409, "call_state")
    back = ok(api.post(f"/api/v1/calls/{CITIZEN}/conference/rejoin", as_="op1"))
    assert back["operator_in_call"] is True
    assert pbx.named("call_endpoint") == [("call_endpoint", "op8001", room, "cc-room-operator")]
    kinds = [k for k, _ in events(seeded)]
    assert kinds == ["conference_started", "unit_dial", "unit_dial_result", "conference_join",
                     "conference_leave", "conference_join"]

    out = ok(api.post(f"/api/v1/calls/{CITIZEN}/outcome", as_="op1",
                      json={"case_number": number, "answer": "抢修队已出发", "satisfaction": "satisfied"}))
    assert out["status"] == "awaiting_close"
    case = ok(api.get(f"/api/v1/cases/{number}", as_="op1"))
    assert case["satisfaction"] == "satisfied"
    with session_scope(seeded) as s:
        row = s.execute(select(Case).where(Case.number == number)).scalar_one()
        assert row.callback_required is False  # R7.4: rated live, no callback
    # another operator may not rate it
    refused(api.post(f"/api/v1/calls/{CITIZEN}/outcome", as_="op2",
                     json={"case_number": number, "answer": "x", "satisfaction": "satisfied"}), 403, "call_owner")


def test_r7_3g_emergency_office_is_reached_by_three_way_call_not_by_transfer(api, pbx, seeded):
    number = new_case(api)
    refused(api.post(f"/api/v1/calls/{CITIZEN}/transfer", as_="op1",
                     json={"case_number": number, "unit": "emergency_office"}), 409, "R7.3g")
    assert pbx.actions == []
    body = ok(api.post(f"/api/v1/calls/{CITIZEN}/conference", as_="op1",
                       json={"case_number": number, "unit": "emergency_office"}))
    assert body["connected"] == {"unit": "emergency_office", "duty": "A"}
    assert pbx.named("dial")[0][1] == "13900003602"


# --------------------------------------------------------------------------------------------
# convenience service transfer (R7.3f)


def test_r7_3f_convenience_transfer_refused_until_consent_then_transferred(api, pbx, seeded):
    number = new_case(api)
    body = refused(api.post(f"/api/v1/calls/{CITIZEN}/convenience-transfer", as_="op1",
                            json={"case_number": number}), 409, "R7.3f")
    assert "consent" in body["detail"]
    assert pbx.actions == []
    # the citizen said no: still refused
    ok(api.post(f"/api/v1/calls/{CITIZEN}/consent", as_="op1",
                json={"case_number": number, "disclaimer_read": True, "consent": False}))
    refused(api.post(f"/api/v1/calls/{CITIZEN}/convenience-transfer", as_="op1",
                     json={"case_number": number}), 409, "R7.3f")
    # consent without the disclaimer is not consent
    refused(api.post(f"/api/v1/calls/{CITIZEN}/consent", as_="op1",
                     json={"case_number": number, "disclaimer_read": False, "consent": True}), 409, "R7.3f")
    ok(api.post(f"/api/v1/calls/{CITIZEN}/consent", as_="op1",
                json={"case_number": number, "disclaimer_read": True, "consent": True}))
    done = ok(api.post(f"/api/v1/calls/{CITIZEN}/convenience-transfer", as_="op1", json={"case_number": number}))
    assert done["state"] == "transferred"
    assert pbx.named("redirect") == [("redirect", "PJSIP/trunk-00000009", "cc-transfer", CONVENIENCE_LINE,
                                      (OP1_CHAN, "cc-hangup", "s"))]
    assert work_orders(seeded, number) == [("convenience_center", "transfer", "notified")]
    kinds = [k for k, _ in events(seeded)]
    assert kinds == ["convenience_consent", "convenience_consent", "transfer_blind"]
    with session_scope(seeded) as s:
        assert s.execute(select(Case).where(Case.number == number)).scalar_one().callback_required is False


# --------------------------------------------------------------------------------------------
# recordings


def test_recording_is_linked_to_the_call_and_served_only_to_authorised_roles(api, pbx, seeded, tmp_path, monkeypatch):
    files = tmp_path / "root"
    monkeypatch.setattr("callcenter.pbx.root.asterisk_root", lambda settings: files)
    wav = files / recording.recording_path(CITIZEN).lstrip("/")
    wav.parent.mkdir(parents=True)
    wav.write_bytes(b"RIFF....WAVEfmt ")
    number = new_case(api)
    ok(api.post(f"/api/v1/calls/{CITIZEN}/conference", as_="op1", json={"case_number": number, "unit": "water_supply"}))
    with session_scope(seeded) as s:
        call = s.execute(select(Call).where(Call.uniqueid == CITIZEN)).scalar_one()
        assert call.recording_path == recording.recording_path(CITIZEN)
        assert call.recording_path.endswith("/1795600000.100.wav")
    for who in ("bo1", "sup1", "op1"):
        r = api.get(f"/api/v1/calls/{CITIZEN}/recording", as_=who)
        assert r.status_code == 200, (who, r.text)
        assert r.content == b"RIFF....WAVEfmt " and r.headers["content-type"] == "audio/wav"
    for who in ("op2", "water1"):
        refused(api.get(f"/api/v1/calls/{CITIZEN}/recording", as_=who), 403, "A2")
    assert api.get("/api/v1/calls/1795600000.404/recording", as_="bo1").status_code == 404


def test_purge_recordings_deletes_what_is_older_than_the_retention(seeded, tmp_path, monkeypatch, clock):
    files = tmp_path / "root"
    monkeypatch.setattr("callcenter.pbx.root.asterisk_root", lambda settings: files)
    now = clock()
    with session_scope(seeded) as s:
        from ticketing.calls import call_row
        for uid, age in (("old.1", 200), ("new.1", 10)):
            call = call_row(s, uniqueid=uid, started_at=now - timedelta(days=age))
            path = files / recording.recording_path(uid).lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            recording.link_recording(s, call, at=now)
    stray = files / recording.RECORDINGS_DIR.lstrip("/") / "stray.wav"
    stray.write_bytes(b"x")
    import os
    old = (now - timedelta(days=400)).timestamp()
    os.utime(stray, (old, old))
    with session_scope(seeded) as s:
        assert recording.purge_recordings(s, now, 180, settings=object()) == 2
    with session_scope(seeded) as s:
        rows = {c.uniqueid: c.recording_path for c in s.execute(select(Call)).scalars()}
        assert rows["old.1"] is None and rows["new.1"] == recording.recording_path("new.1")
        purged = s.execute(select(CallEvent).where(CallEvent.kind == "recording_purged")).scalars().all()
        assert len(purged) == 1
    assert not (files / recording.recording_path("old.1").lstrip("/")).exists()
    assert (files / recording.recording_path("new.1").lstrip("/")).exists()
    assert not stray.exists()
    with session_scope(seeded) as s:  # again: nothing left to do
        assert recording.purge_recordings(s, now, 180, settings=object()) == 0


def test_recording_file_name_follows_the_dialplan_filter():
    assert recording.recording_path("sim-abc;2") == "/var/spool/asterisk/monitor/callcenter/simabc2.wav"
    assert Path(recording.recording_path("1795600000.100")).name == "1795600000.100.wav"
