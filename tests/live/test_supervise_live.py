"""Listen, whisper, barge on the real Asterisk (issue 12 §5; R5.2, A1), through the HTTP API, with
baresip phones as the operator (op8003) and as the supervisor's own phone (op8004). The citizen is
an originated Local channel bridged to the operator (tests/live/test_transfer_live.py).

Checked from Asterisk's side: the supervisor's leg runs ChanSpy on the operator's channel
(ChanSpyStart names spyer and spyee) with the options of the mode (`core show channels concise`);
a mode switch moves that same leg (no second ring); leaving hangs it up. And by ear: the operator's
phone says a 440 Hz tone, the supervisor's 1000 Hz; what the operator's and the supervisor's phones
hear is recorded by baresip, what the citizen hears by MixMonitor on the citizen's leg, and the
1000 Hz tone is looked for in each mode's stretch (Goertzel, median of 100 ms windows): listen -- heard by nobody; whisper --
by the operator only; barge -- by operator and citizen. The supervisor hears the operator all along.
Every step is audited.
"""
from __future__ import annotations

import math
import time
import uuid
from array import array
from pathlib import Path

import pytest
from sqlalchemy import select

from callcenter.pbx.root import RECORDINGS_DIR, host_path
from tests.live.phones import start_phones, tone_wav

from tests.live.test_transfer_live import (  # noqa: F401  (the fixture)
    OPERATOR_EXT,
    PASSWORD,
    channels,
    citizen_calls_operator,
    stack,
)

RATE = 8000
OPERATOR_HZ, SUPERVISOR_HZ = 440.0, 1000.0
PHASE_SECONDS = 3.0  # audio per mode; its first MARGIN is left out (switching, jitter buffers). Long enough
# that a recording running a second behind the wall clock (a loaded machine) still gives each mode its own stretch
MARGIN = 0.5

SUPERVISOR_EXT = "8004"  # op8004's phone is the supervisor's (only test_operators_live uses it, not at once)
URL = f"/api/v1/operators/{OPERATOR_EXT}/supervise"


@pytest.fixture(autouse=True)
def own_audit_vault(tmp_path, monkeypatch):
    """A1: this test's fresh store gets its own audit key (as tests/conftest.py gives every unit
    test), not the shared install's, whose key starts at that install's own next event."""
    from callcenter.audit_vault import install

    monkeypatch.setattr("callcenter.api.app.install_audit_vault", lambda _state_dir: install(tmp_path / "audit"))


def pcm(path: Path) -> array:
    """The 16-bit samples of a wav (its data chunk; the header's sizes may not be final)."""
    raw = path.read_bytes()
    start = raw.index(b"data") + 8
    samples = array("h")
    samples.frombytes(raw[start:len(raw) - (len(raw) - start) % 2])
    return samples


def tone_level(samples: array, hz: float) -> float:
    """Amplitude of the ``hz`` component (Goertzel), in sample units; 0 for an empty stretch."""
    n = len(samples)
    if n == 0:
        return 0.0
    k = 2 * math.cos(2 * math.pi * hz / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    return 2 * math.sqrt(max(s1 * s1 + s2 * s2 - k * s1 * s2, 0.0)) / n


def stretch(samples: array, t0: float, start: float, end: float) -> array:
    """The samples between two moments (time.monotonic) of a recording that began at t0."""
    a, b = int((start - t0 + MARGIN) * RATE), int((end - t0) * RATE)
    return samples[max(a, 0):max(b, 0)]


def heard(samples: array, t0: float, phase: tuple[float, float], hz: float) -> bool:
    """Whether the tone is in the stretch: the median over its 100 ms windows (a moment's dropout
    while ChanSpy restarts on a mode switch, or jitter at the edges, does not decide it)."""
    part, step = stretch(samples, t0, *phase), RATE // 10
    levels = sorted(tone_level(part[i:i + step], hz) for i in range(0, len(part) - step + 1, step))
    assert levels, f"no audio recorded for {phase}"
    level = levels[len(levels) // 2]
    assert level > 1000 or level < 300, f"{hz} Hz at {level:.0f}: neither clearly heard nor clearly not"
    return level > 1000


def bridged(verify, uniqueid: str, timeout: float = 5.0) -> str:
    """The bridge the citizen's channel is in, once it is (the phone reports the answer first)."""
    deadline = time.monotonic() + timeout
    while not (bridge := channels(verify)[uniqueid]["bridge"]):
        assert time.monotonic() < deadline, f"{uniqueid} in no bridge"
        time.sleep(0.1)
    return bridge


def concise(verify) -> dict[str, list[str]]:
    """uniqueid -> the fields of `core show channels concise` (name, ..., application 5, data 6)."""
    out = {}
    for line in verify.command("core show channels concise").splitlines():
        f = line.split("!")
        if len(f) > 13:
            out[f[13]] = f
    return out


def wait_spying(verify, spy_channel: str, options: str, timeout: float = 8.0) -> None:
    """The supervisor's leg runs ChanSpy on the operator's phone with these options."""
    deadline = time.monotonic() + timeout
    while True:
        row = next((f for f in concise(verify).values() if f[0] == spy_channel), None)
        if row is not None and row[5] == "ChanSpy" and row[6] == f"PJSIP/op{OPERATOR_EXT}-,{options}":
            break
        assert time.monotonic() < deadline, f"not spying with {options}: {row}"
        time.sleep(0.1)
    start = verify.wait_for(lambda m: m.get("Event") == "ChanSpyStart" and m.get("SpyerChannel") == spy_channel,
                            timeout=timeout)
    assert start["SpyeeChannel"].startswith(f"PJSIP/op{OPERATOR_EXT}-")


def hold() -> tuple[float, float]:
    """Let one mode's audio flow for PHASE_SECONDS (a duration to measure, no event to await)."""
    start = time.monotonic()
    time.sleep(PHASE_SECONDS)
    return start, time.monotonic()


async def test_r5_2_supervisor_listens_whispers_barges_from_own_phone_audited(stack, tmp_path):
    st = stack
    from callcenter.auth import create_user
    from ticketing.models import AuditEvent
    from ticketing.store import session_scope

    with session_scope(st.sessions) as s:
        create_user(s, username="sup", password=PASSWORD, role="supervisor", operator_extension=SUPERVISOR_EXT,
                    now=st.domain.clock())
    r = await st.client.post("/api/v1/auth/token", json={"username": "sup", "password": PASSWORD})
    sup_auth = {"Authorization": f"Bearer {r.json()['access_token']}"}

    async def call(method, json=None):
        r = await st.client.request(method, URL, json=json, headers=sup_auth)
        assert r.status_code == 200, r.text
        return r.json()

    rec = tmp_path / "heard"
    citizen_file = f"{RECORDINGS_DIR}/spy-{uuid.uuid4().hex[:10]}"
    op, sup = f"op{OPERATOR_EXT}", f"op{SUPERVISOR_EXT}"
    with start_phones(st.settings, tmp_path / "o", [op], record_dir=rec,
                      audio_wav=tone_wav(tmp_path / "op.wav", 60, OPERATOR_HZ)) as op_phone, \
            start_phones(st.settings, tmp_path / "s", [sup], record_dir=rec,
                         audio_wav=tone_wav(tmp_path / "sup.wav", 60, SUPERVISOR_HZ)) as sup_phone:
        uid, _citizen = citizen_calls_operator(st.verify, op_phone)
        op_t0 = time.monotonic()  # the operator's phone records from its answer
        op_bridge = bridged(st.verify, uid)
        # what the citizen hears: the read side of the citizen's other half (Local ...;1)
        citizen_leg = concise(st.verify)[uid[:-2]][0]
        reply = st.verify.action({"Action": "MixMonitor", "Channel": citizen_leg, "File": f"{citizen_file}-both.wav",
                                  "Options": f"r({citizen_file}-heard.wav)"})
        assert reply.get("Response") == "Success", reply
        cit_t0 = time.monotonic()

        phases = {}
        body = await call("POST", {"mode": "listen"})
        spy = body["channel"]
        assert spy.startswith(f"PJSIP/{sup}-")
        sup_phone[sup].wait_event("CALL_ESTABLISHED", timeout=5)
        sup_t0 = time.monotonic()
        wait_spying(st.verify, spy, "qbES")  # listen: ChanSpy writes nothing into the call
        # the citizen and the operator stay in their own two-party bridge: the spy is not in it
        assert channels(st.verify)[uid]["bridge"] == op_bridge
        assert all(f[12] != op_bridge for f in concise(st.verify).values() if f[0] == spy)
        phases["listen"] = hold()

        assert (await call("POST", {"mode": "whisper"}))["channel"] == spy
        wait_spying(st.verify, spy, "qbESw")  # w: the supervisor's audio to the spied-on operator only
        phases["whisper"] = hold()
        assert (await call("POST", {"mode": "barge"}))["channel"] == spy
        wait_spying(st.verify, spy, "qbESB")  # B: to both parties of the operator's call
        phases["barge"] = hold()

        left = await call("DELETE")
        assert left["mode"] == "barge" and left["seconds"] >= 0
        st.verify.wait_for(lambda m: m.get("Event") == "Hangup" and m.get("Channel") == spy, timeout=5)
        assert channels(st.verify)[uid]["bridge"] == op_bridge  # the call itself goes on
        st.verify.action({"Action": "StopMixMonitor", "Channel": citizen_leg})
        st.verify.action({"Action": "Hangup", "Channel": citizen_leg})
        op_phone[op].wait_event("CALL_CLOSED", timeout=5)

    op_heard = pcm(next((rec / op).glob("dump-*-dec.wav")))
    sup_heard = pcm(next((rec / sup).glob("dump-*-dec.wav")))
    citizen_heard = pcm(host_path(st.settings, f"{citizen_file}-heard.wav"))
    for path in (f"{citizen_file}-heard.wav", f"{citizen_file}-both.wav"):
        host_path(st.settings, path).unlink(missing_ok=True)
    said = {mode: (heard(op_heard, op_t0, phase, SUPERVISOR_HZ), heard(citizen_heard, cit_t0, phase, SUPERVISOR_HZ))
            for mode, phase in phases.items()}
    # (operator hears the supervisor, citizen hears the supervisor)
    assert said == {"listen": (False, False), "whisper": (True, False), "barge": (True, True)}, said
    assert all(heard(sup_heard, sup_t0, phase, OPERATOR_HZ) for phase in phases.values())

    with session_scope(st.sessions) as s:
        events = [(e.action, e.actor_name, dict(e.data)) for e in s.execute(
            select(AuditEvent).where(AuditEvent.action.like("supervise%")).order_by(AuditEvent.id)).scalars()]
    assert [(a, who) for a, who, _ in events] == [("supervise_start", "sup"), ("supervise_mode", "sup"),
                                                  ("supervise_mode", "sup"), ("supervise_end", "sup")]
    assert events[0][2]["operator"] == OPERATOR_EXT and events[0][2]["mode"] == "listen"
    assert events[-1][2]["reason"] == "left" and "seconds" in events[-1][2]
