"""Citizens calling 12345 over SIP/UDP through the carrier trunk, the way a real call arrives: SIPp
from the trunk's address (setting sip_trunk_match), G.711 audio and RFC 4733 DTMF in one RTP stream
(tests/live/sipp.py), into [citizen-in] and our menu over FastAGI. The drills of issue 16 item 3 place
their load the same way.

A handful of calls at once, keys during the greeting (the key carries into the menu), ~16 s.
"""
from __future__ import annotations

import asyncio
import shutil

import pytest
from sqlalchemy import select

from ticketing.models import Call, Case
from ticketing.store import session_scope
from tests.live import sipp
from tests.live.helpers import AmiSession, user_event

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) not installed")]

# (behaviour, expected call outcome, reason, case kind made)
CITIZENS = (
    (sipp.Behaviour("t-consult", ((3.0, "1"),), 30.0, "consultation"), "queued", "consultation", "consultation"),
    (sipp.Behaviour("t-suggest", ((3.5, "2"),), 30.5, "suggestion"), "queued", "suggestion", "suggestion"),
    (sipp.Behaviour("t-operator", ((3.0, "0"),), 20.0, "operator"), "queued", "operator", None),
    (sipp.Behaviour("t-hangup", (), 2.5, ""), "abandoned", "hangup", None),
)


async def test_r2_1_sip_calls_through_the_trunk_reach_the_menu_and_the_call_records(asterisk, hotline, tmp_path):
    """SIP INVITEs from the carrier's address are taken without registration into the menu; the
    RFC 4733 keys choose the branch (R2.1: cases of the chosen kind for the caller's number), every
    call leaves a complete call record, and Asterisk reports each trunk call's RTP statistics."""
    settings = asterisk
    scenarios = sipp.prepare(tmp_path / "sipp", tuple(b for b, *_ in CITIZENS))
    target = f"{settings.sip_host}:{settings.sip_port}"
    local_ip = settings.sip_trunk_match.split(",")[0].split("/")[0]
    callers = {b.name: f"1380{i}" for i, (b, *_) in enumerate(CITIZENS)}  # + SIPp's call number 1
    with AmiSession(settings, events="user") as ami:
        procs = []
        for i, (b, *_) in enumerate(CITIZENS):
            argv = sipp.sipp_argv(scenarios[b.name], target=target, local_ip=local_ip, local_port=25060 + i,
                                  media_port=26000 + 100 * i, caller_prefix=callers[b.name], calls=1)
            procs.append(await asyncio.create_subprocess_exec(
                *argv, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT))
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
        for (b, *_), proc, (out, _) in zip(CITIZENS, procs, outputs):
            assert proc.returncode == 0, f"{b.name}: SIPp failed:\n{out.decode(errors='replace')[-1500:]}"
        qos = [await asyncio.to_thread(ami.wait_for, user_event("CallcenterRtpQuality"), 10) for _ in CITIZENS]

    await asyncio.sleep(0.5)  # the menu's last transaction after the caller's BYE
    with session_scope(hotline.sessions) as s:
        calls = {c.caller_number: c for c in s.execute(select(Call)).scalars()}
        for b, outcome, reason, kind in CITIZENS:
            number = callers[b.name] + "1"
            call = calls.get(number)
            assert call is not None, f"{b.name}: no call record for {number} (records: {sorted(calls)})"
            assert (call.direction, call.outcome, call.outcome_reason) == ("inbound", outcome, reason), b.name
            if b.keys:
                assert call.digits[0]["digits"] == b.keys[0][1], b.name  # the RFC 4733 key reached the menu
            if kind is None:
                assert call.case_id is None, b.name
                continue
            case = s.get(Case, call.case_id)
            assert case.kind.value == kind and case.citizen_phone == number, b.name

    for event in qos:
        stats = dict(part.split("=", 1) for part in event["Qos"].split(";") if "=" in part)
        # Asterisk received the caller's stream (SSRC of tests/live/sipp.py) and counted its loss
        assert int(stats["themssrc"]) == 0x12345 and int(stats["rxcount"]) > 50, stats
        assert "lp" in stats and "rxjitter" in stats, stats
