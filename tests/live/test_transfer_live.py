"""Warm transfer, B-role fallback, convenience transfer and recording on the real Asterisk (issue 4 §4,
§6, §7), through the HTTP API, with baresip phones as the operator (op8003) and as the member
unit's duty phones (unit-a = duty A, unit-b = duty B of the water company and the emergency office;
unit-a is also the convenience service center's line: config/phone_routes.yaml). Citizens are
originated Local channels that keep sending silence.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

import callcenter.auth as auth_module
from callcenter.ami.client import AMIClient
from callcenter.callcontrol.recording import recording_path
from callcenter.callcontrol.transfer import AmiPbx, CallControl
from callcenter.pbx.root import host_path
from tests.live.helpers import AmiSession, hangup_channels
from tests.live.phones import start_phones as _start_phones
from tests.live.phones import tone_wav

OPERATOR_EXT = "8003"  # not the operators other live tests register (8001, 8002, 8004)
PASSWORD = "live-transfer-pass-123"
# every channel these tests make (cleaned up after each test, whatever happened)
OUR_CHANNELS = r"^(Local/(8003@operators|[0-9]+@unit-phones|s@hotline-queue)-|PJSIP/(op8003|unit-a|unit-b)-)"


def start_phones(settings, tmp_dir, endpoints, **kw):
    # baresip hangs up when its microphone file ends (AUDIO_ERROR): a long one outlives any test
    Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    return _start_phones(settings, tmp_dir, endpoints, audio_wav=tone_wav(Path(tmp_dir) / "long.wav", 90), **kw)


@pytest.fixture
async def stack(asterisk, tmp_path, monkeypatch):
    """The API over a fresh SQLite store, call control over a real AMI client, user `op` at 8003."""
    monkeypatch.setattr(auth_module, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    from callcenter.api.app import create_app
    from callcenter.auth import create_user
    from tests.conftest import CONFIG_DIR, FakeClock
    from tests.live.conftest import IN_HOURS
    from ticketing.domain import Domain
    from ticketing.seed import seed_units
    from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

    url = f"sqlite:///{tmp_path / 'live.db'}"
    upgrade(url)
    clock = FakeClock(IN_HOURS)
    base = Domain.load(CONFIG_DIR)
    domain = Domain(policy=base.policy, calendar=base.calendar, city=base.city, clock=clock)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        seed_units(s, domain.city, clock())
        create_user(s, username="op", password=PASSWORD, role="front_desk", operator_extension=OPERATOR_EXT,
                    now=clock())
        create_user(s, username="bo", password=PASSWORD, role="back_office", now=clock())
    app = create_app(asterisk, domain=domain, engine=engine)
    ami = AMIClient.from_settings(asterisk)
    await ami.start()
    app.state.call_transfers = CallControl(AmiPbx(ami), ring_seconds=6)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=60)
    tokens = {}
    for user in ("op", "bo"):
        r = await client.post("/api/v1/auth/token", json={"username": user, "password": PASSWORD})
        assert r.status_code == 200, r.text
        tokens[user] = {"Authorization": f"Bearer {r.json()['access_token']}"}

    class Stack:
        pass

    st = Stack()
    st.client, st.tokens, st.sessions, st.ami, st.settings = client, tokens, sessions, ami, asterisk
    st.domain, st.engine = domain, engine
    st.verify = AmiSession(asterisk)
    try:
        yield st
    finally:
        with contextlib.suppress(Exception):
            hangup_channels(st.verify, OUR_CHANNELS)
        st.verify.close()
        await client.aclose()
        await ami.stop()
        engine.dispose()


async def post(st, path, json=None, who="op", status=200):
    r = await st.client.post(path, json=json, headers=st.tokens[who])
    assert r.status_code == status, r.text
    return r.json()


async def new_case(st, kind="urgent_help") -> str:
    body = await post(st, "/api/v1/cases", {"kind": kind, "channel": "mobile", "title": "自来水管爆裂",
                                            "description": "小区主水管爆裂", "citizen_phone": "13812345678"},
                      status=201)
    return body["number"]


def citizen_calls_operator(verify: AmiSession, phones) -> tuple[str, str]:
    """A citizen (Local channel sending silence) connected straight to operator 8003's phone.
    Returns (the citizen channel's uniqueid, its name)."""
    base = f"cit-{uuid.uuid4().hex[:10]}"
    since = len(phones[f"op{OPERATOR_EXT}"].events)
    reply = verify.action({"Action": "Originate", "Channel": f"Local/{OPERATOR_EXT}@operators/n",
                           "Context": "test-citizen", "Exten": "s", "Priority": "1", "Async": "true",
                           "ChannelId": base, "OtherChannelId": f"{base}-2", "Timeout": "15000"})
    assert reply.get("Response") == "Success", reply
    phones[f"op{OPERATOR_EXT}"].wait_event("CALL_ESTABLISHED", timeout=15, since=since)
    return f"{base}-2", channel_name(verify, f"{base}-2")


def channels(verify: AmiSession) -> dict[str, dict[str, str]]:
    """uniqueid -> {name, bridge}, from `core show channels concise`."""
    out = {}
    for line in verify.command("core show channels concise").splitlines():
        f = line.split("!")
        if len(f) > 13:
            out[f[13]] = {"name": f[0], "bridge": f[12]}
    return out


def channel_name(verify: AmiSession, uniqueid: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chan = channels(verify).get(uniqueid)
        if chan:
            return chan["name"]
        time.sleep(0.1)
    raise AssertionError(f"no channel {uniqueid}")


def room_members(verify: AmiSession, room: str) -> list[str]:
    """Channel names in a ConfBridge room (AMI ConfbridgeList)."""
    action_id = verify.send({"Action": "ConfbridgeList", "Conference": room})
    members = []
    while True:
        msg = verify.wait_for(lambda m: m.get("ActionID") == action_id, timeout=5)
        if msg.get("Event") == "ConfbridgeList":
            members.append(msg["Channel"])
        elif msg.get("Event") == "ConfbridgeListComplete":
            return sorted(members)


def wait_members(verify: AmiSession, room: str, predicate, timeout: float = 8.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(TimeoutError):
            members = room_members(verify, room)
            if predicate(members):
                return members
        if time.monotonic() > deadline:
            raise AssertionError(f"room {room}: {room_members(verify, room)}")
        time.sleep(0.2)


def call_events(st, uniqueid: str) -> list[tuple[str, dict]]:
    from ticketing.models import Call, CallEvent
    from ticketing.store import session_scope

    with session_scope(st.sessions) as s:
        call = s.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one()
        return [(e.kind, dict(e.data)) for e in s.execute(
            select(CallEvent).where(CallEvent.call_id == call.id).order_by(CallEvent.id)).scalars()]


def hang_up(verify: AmiSession, *names: str) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            verify.action({"Action": "Hangup", "Channel": name})


def is_operator(name: str) -> bool:
    return name.startswith(f"PJSIP/op{OPERATOR_EXT}-")


def is_unit_leg(name: str, number: str) -> bool:
    return name.startswith(f"Local/{number}@unit-phones-")


WATER_A, WATER_B = "13900002902", "13900002903"


async def test_warm_transfer_completed_citizen_ends_with_the_unit(stack, tmp_path):
    st = stack
    with start_phones(st.settings, tmp_path, [f"op{OPERATOR_EXT}", "unit-a"]) as phones:
        number = await new_case(st)
        uid, citizen = citizen_calls_operator(st.verify, phones)
        body = await post(st, f"/api/v1/calls/{uid}/transfer", {"case_number": number, "unit": "water_supply"})
        assert body["state"] == "consulting" and body["connected"] == {"unit": "water_supply", "duty": "A"}
        phones["unit-a"].wait_event("CALL_ESTABLISHED", timeout=5)
        # the citizen waits alone (hold music) in the call's room
        assert wait_members(st.verify, body["room"], lambda m: m == [citizen]) == [citizen]
        op_since = len(phones[f"op{OPERATOR_EXT}"].events)
        done = await post(st, f"/api/v1/calls/{uid}/transfer/complete")
        assert done["state"] == "transferred"
        members = wait_members(st.verify, body["room"], lambda m: len(m) == 2)
        assert citizen in members and any(is_unit_leg(m, WATER_A) for m in members)
        phones[f"op{OPERATOR_EXT}"].wait_event("CALL_CLOSED", timeout=5, since=op_since)  # operator freed
        assert not any(is_operator(c["name"]) for c in channels(st.verify).values())
        kinds = [k for k, _ in call_events(st, uid)]
        assert kinds == ["hold", "unit_dial", "unit_dial_result", "consult", "transfer_completed"]
        # the operator's call cannot be transferred again: it is the unit's now
        r = await st.client.post(f"/api/v1/calls/{uid}/transfer/cancel", headers=st.tokens["op"])
        assert r.status_code == 409, r.text
        hang_up(st.verify, citizen, *members)


async def test_warm_transfer_cancelled_back_to_the_citizen(stack, tmp_path):
    st = stack
    with start_phones(st.settings, tmp_path, [f"op{OPERATOR_EXT}", "unit-a"]) as phones:
        number = await new_case(st)
        uid, citizen = citizen_calls_operator(st.verify, phones)
        body = await post(st, f"/api/v1/calls/{uid}/transfer", {"case_number": number, "unit": "water_supply"})
        unit_since = len(phones["unit-a"].events)
        phones["unit-a"].wait_event("CALL_ESTABLISHED", timeout=5)
        back = await post(st, f"/api/v1/calls/{uid}/transfer/cancel")
        assert back["state"] == "talking"
        phones["unit-a"].wait_event("CALL_CLOSED", timeout=5, since=unit_since)
        members = wait_members(st.verify, body["room"], lambda m: len(m) == 2)
        assert citizen in members and any(is_operator(m) for m in members)
        assert [k for k, _ in call_events(st, uid)][-2:] == ["transfer_cancelled", "unhold"]
        # the citizen hangs up: the call is over, acting on it is a 409
        hang_up(st.verify, citizen)
        await asyncio.sleep(0.5)
        r = await st.client.post(f"/api/v1/calls/{uid}/transfer", headers=st.tokens["op"],
                                 json={"case_number": number, "unit": "water_supply"})
        assert r.status_code == 410 and r.json()["error"] == "call_ended", r.text
        r = await st.client.post("/api/v1/calls/no-such-call.1/transfer/cancel", headers=st.tokens["op"])
        assert r.status_code == 404 and r.json()["error"] == "call_unknown", r.text


async def test_b_role_rung_when_a_does_not_answer(stack, tmp_path):
    st = stack
    with start_phones(st.settings, tmp_path / "a", ["unit-a"], answermode="manual") as silent, \
            start_phones(st.settings, tmp_path / "b", [f"op{OPERATOR_EXT}", "unit-b"]) as phones:
        number = await new_case(st)
        uid, citizen = citizen_calls_operator(st.verify, phones)
        started = time.monotonic()
        body = await post(st, f"/api/v1/calls/{uid}/transfer", {"case_number": number, "unit": "water_supply"})
        assert body["connected"] == {"unit": "water_supply", "duty": "B"}
        assert time.monotonic() - started >= 5  # A rang for its full time first
        silent["unit-a"].wait_event("CALL_INCOMING", timeout=1)
        assert not any(e.get("type") == "CALL_ESTABLISHED" for e in silent["unit-a"].events)
        phones["unit-b"].wait_event("CALL_ESTABLISHED", timeout=5)
        results = [(d["duty"], d["result"]) for k, d in call_events(st, uid) if k == "unit_dial_result"]
        assert results == [("A", "no_answer"), ("B", "answered")]
        await post(st, f"/api/v1/calls/{uid}/transfer/complete")
        members = wait_members(st.verify, body["room"], lambda m: len(m) == 2)
        assert any(is_unit_leg(m, WATER_B) for m in members)
        hang_up(st.verify, citizen, *members)


async def test_r7_3f_convenience_transfer_refused_without_consent_done_with_it(stack, tmp_path):
    st = stack
    with start_phones(st.settings, tmp_path, [f"op{OPERATOR_EXT}", "unit-a"]) as phones:
        number = await new_case(st)
        uid, citizen = citizen_calls_operator(st.verify, phones)
        r = await st.client.post(f"/api/v1/calls/{uid}/convenience-transfer", headers=st.tokens["op"],
                                 json={"case_number": number})
        assert r.status_code == 409 and r.json()["error"] == "R7.3f", r.text
        await asyncio.sleep(1.0)
        assert not any(e.get("type") == "CALL_INCOMING" for e in phones["unit-a"].events)  # nothing dialled
        await post(st, f"/api/v1/calls/{uid}/consent",
                   {"case_number": number, "disclaimer_read": True, "consent": True})
        op_since = len(phones[f"op{OPERATOR_EXT}"].events)
        done = await post(st, f"/api/v1/calls/{uid}/convenience-transfer", {"case_number": number})
        assert done["state"] == "transferred"
        phones["unit-a"].wait_event("CALL_ESTABLISHED", timeout=10)  # the center's line answered
        phones[f"op{OPERATOR_EXT}"].wait_event("CALL_CLOSED", timeout=5, since=op_since)
        assert [k for k, _ in call_events(st, uid)] == ["convenience_consent", "transfer_blind"]
        hang_up(st.verify, citizen)


async def test_queue_call_is_recorded_and_the_file_linked(stack, tmp_path):
    """A citizen answered from the 12345 queue is recorded by MixMonitor (queues.conf
    monitor-format); the first call-control step links the file to the call (A2)."""
    st = stack
    interface = f"PJSIP/op{OPERATOR_EXT}"
    with start_phones(st.settings, tmp_path, [f"op{OPERATOR_EXT}", "unit-a"]) as phones:
        number = await new_case(st)
        st.verify.action({"Action": "QueueAdd", "Queue": "hotline-12345", "Interface": interface})
        try:
            base = f"rec-{uuid.uuid4().hex[:10]}"
            uid = f"{base}-2"
            st.verify.action({"Action": "Originate", "Channel": "Local/s@hotline-queue/n", "Context": "test-citizen",
                              "Exten": "s", "Priority": "1", "Async": "true", "ChannelId": base,
                              "OtherChannelId": uid, "Timeout": "30000"})
            phones[f"op{OPERATOR_EXT}"].wait_event("CALL_ESTABLISHED", timeout=30)
        finally:
            st.verify.action({"Action": "QueueRemove", "Queue": "hotline-12345", "Interface": interface})
        await asyncio.sleep(1.0)
        body = await post(st, f"/api/v1/calls/{uid}/conference", {"case_number": number, "unit": "water_supply"})
        assert body["state"] == "conference"
        await asyncio.sleep(1.0)
        citizen = channel_name(st.verify, uid)
        hang_up(st.verify, citizen)
        await asyncio.sleep(1.0)  # MixMonitor closes the file when the channel goes
        path = host_path(st.settings, recording_path(uid))
        assert path.is_file() and path.stat().st_size > 44, path  # more than a wav header
        from ticketing.models import Call
        from ticketing.store import session_scope

        with session_scope(st.sessions) as s:
            call = s.execute(select(Call).where(Call.uniqueid == uid)).scalar_one()
            assert call.recording_path == recording_path(uid)
        r = await st.client.get(f"/api/v1/calls/{uid}/recording", headers=st.tokens["bo"])
        assert r.status_code == 200 and r.content[:4] == b"RIFF"
        path.unlink()
