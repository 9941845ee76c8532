"""The provisioned Asterisk itself: status, dialplan contract, FastAGI-down fallback, prompts, SIP."""
from __future__ import annotations

import os

from callcenter.pbx import credentials, process
from callcenter.pbx.root import recordings_dir, root_ids
from tests.live.helpers import (
    AmiSession,
    agi_port_lock,
    hangup_channels,
    hold_tcp_port,
    originate_local,
    queue_callers,
    sip_register,
    user_event,
)


def test_status_reports_ami_up(asterisk):
    info = process.status(asterisk)
    assert info["installed"] and info["running"] and info["pids"]
    assert info["version"].startswith("Asterisk 22")
    assert info["ami"]["reachable"] and info["ami"]["login"], info["ami"]
    # 8005: the browser phone, 8006: the secure (TLS + SRTP) phone
    assert set(info["endpoints"]) == {"op8001", "op8002", "op8003", "op8004", "op8005", "op8006"}
    assert process.start(asterisk) == "already running"


def test_asterisk_does_not_run_as_root(asterisk):
    uid, gid = root_ids(asterisk)
    for pid in process.running_pids(asterisk):
        status = open(f"/proc/{pid}/status").read()
        real_uid = int(status.split("Uid:")[1].split()[0])
        assert real_uid == uid != 0
    recordings = recordings_dir(asterisk)
    assert recordings.stat().st_uid == uid and os.access(recordings, os.W_OK)


def test_dialplan_contract_is_loaded(asterisk):
    citizen_in = process.cli(asterisk, "dialplan show citizen-in")
    assert f"AGI(agi://{asterisk.agi_host}:{asterisk.agi_port}/ivr/main,${{CHANNEL(linkedid)}})" in citizen_in
    assert "2 extensions (13 priorities)" in citizen_in  # 12345 and h, nothing lost to a syntax error
    for context in ("hotline-queue", "operators", "test-citizen", "test-dtmf", "outbound-callback",
                    "citizen-phones"):
        out = process.cli(asterisk, f"dialplan show {context}")
        assert f"Context '{context}' created" in out, out
    queue = process.cli(asterisk, "queue show hotline-12345")
    assert "'rrmemory' strategy" in queue
    transports = process.cli(asterisk, "pjsip show transports")
    assert f"{asterisk.sip_host}:{asterisk.sip_port}" in transports


def test_fastagi_down_call_lands_in_queue(asterisk):
    """With nothing on the FastAGI port, AGI() fails (AGISTATUS=FAILURE) and the call still reaches
    the operator queue; the UserEvents and CEL events other parts rely on arrive on AMI."""
    with AmiSession(asterisk) as ami:
        # the port is held only until the AGI attempt is over: other sessions' servers need it
        with agi_port_lock(asterisk), hold_tcp_port(asterisk.agi_host, asterisk.agi_port):
            linkedid, uniqueid = originate_local(ami, "12345", "citizen-in")
            queued = ami.wait_for(user_event("CallcenterQueued", Uniqueid=uniqueid), timeout=10)
        try:
            assert queued["Reason"] == "agi-unreachable" and queued["Linkedid"] == linkedid
            joined = ami.wait_for(lambda m: m.get("Event") == "QueueCallerJoin"
                                  and m.get("Uniqueid") == uniqueid, timeout=5)
            assert joined["Queue"] == "hotline-12345" and joined["Language"] == "zh"
            assert any(c.startswith("Local/12345@citizen-in") for c in queue_callers(ami, "hotline-12345"))
            # cel_manager spells it LinkedID
            cel = ami.wait_for(lambda m: m.get("Event") == "CEL" and m.get("LinkedID") == linkedid, timeout=5)
            assert cel["EventName"] in ("CHAN_START", "ANSWER")
        finally:
            hangup_channels(ami, "^Local/12345@citizen-in-.*")
        hung_up = ami.wait_for(user_event("CallcenterHangup", Uniqueid=uniqueid), timeout=5)
        assert hung_up["AgiStatus"] == "FAILURE"


def test_prompts_and_number_words_play(asterisk):
    """Asterisk finds the rendered files for language zh (a missing prompt fails at once, which the
    IVR would only notice as a caller who 'hung up')."""
    with AmiSession(asterisk) as ami:
        ids = {}
        for prompt in ("hotline/short-silence", "digits/wan", "hotline/no-such-prompt"):
            _, uniqueid = originate_local(ami, "s", "test-playback", variables={"__PROMPT": prompt})
            ids[prompt] = uniqueid
        results = {prompt: ami.wait_for(user_event("CallcenterPlayback", Uniqueid=uid), timeout=10)["Status"]
                   for prompt, uid in ids.items()}
    assert results == {"hotline/short-silence": "SUCCESS", "digits/wan": "SUCCESS",
                       "hotline/no-such-prompt": "FAILED"}


def test_operator_phone_registers_with_generated_password(asterisk):
    """A softphone using op8004's password from var/sip-secrets.json registers; status() shows it.
    (op8004 only, for a moment: max_contacts=1 would push out another test's phone.)"""
    password = credentials.sip_passwords(asterisk)["op8004"]
    assert sip_register(asterisk, "op8004", "wrong-password-123", expires=60) in (401, 403)
    assert sip_register(asterisk, "op8004", password, expires=60) == 200
    try:
        endpoint = process.status(asterisk)["endpoints"]["op8004"]
        assert endpoint["registered"] and endpoint["contact"].startswith("sip:op8004@")
    finally:
        assert sip_register(asterisk, "op8004", password, expires=0) == 200
    assert process.status(asterisk)["endpoints"]["op8004"]["registered"] is False
