"""The citizen's voice menu on the real Asterisk: each branch by simulated calls (Local
channels pressing keys over AMI), checked in the call records (A2) and the case store.

Calls of one batch run concurrently: a call takes 15-30 s of real prompts, a batch no longer.
"""
from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from callcenter.pbx.root import RECORDINGS_DIR
from callcenter.pbx.root import host_path
from callcenter.simulate import simulate_call
from ticketing.audit import SYSTEM
from ticketing.enums import CaseKind, CaseStatus, Channel
from ticketing.models import Call, Case
from ticketing.policy import policy_from_mapping
from ticketing.store import session_scope

pytestmark = pytest.mark.live

AFTER_HOURS = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)  # Wednesday 23:00 Shanghai


def _call(sessions, uniqueid: str) -> Call:
    with session_scope(sessions) as s:
        call = s.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one()
        s.expunge(call)
        return call


def _case(sessions, case_id: int) -> Case:
    with session_scope(sessions) as s:
        case = s.get(Case, case_id)
        s.expunge(case)
        return case


async def test_a2_r2_1_every_menu_branch_gives_its_call_record_and_case(hotline):
    """Menu 1-4 create a phone case of that kind and queue it; 0 and silence queue for an
    operator with no case; three invalid keys queue too; a caller with open cases hears them
    first; 5 + a case number answers with that case's state and deadline."""
    with session_scope(hotline.sessions) as s:
        wf = hotline.domain.workflow(s)
        known = wf.accept(SYSTEM, kind=CaseKind.COMPLAINT, channel=Channel.MOBILE, title="噪音扰民",
                          description="夜间施工", citizen_phone="13900000042")
        wf.dispatch(_bo(s), known, units=["urban_management"])
        known_number, known_id = known.number, known.id

    plans = {
        "consultation": (["1"], "13800000001"),
        "suggestion": (["2"], "13800000002"),
        "complaint": (["3"], "13800000003"),
        "urgent_help": (["4"], "13800000004"),
        "operator": (["0"], "13800000005"),
        "silence": ([""], "13800000006"),
        "invalid": (["9", "8", "7"], "13800000007"),
        "progress": (["5", known_number.replace("-", "") + "#", ""], "051087000001"),
        "open_cases": (["0"], "13900000042"),
    }
    results = await asyncio.gather(*[
        simulate_call(hotline.ami, keys, caller=caller, hang_up_when_queued=True, timeout=120)
        for keys, caller in plans.values()
    ])
    by_name = dict(zip(plans, results))
    records = {name: _call(hotline.sessions, r.uniqueid) for name, r in by_name.items()}

    for kind in ("consultation", "suggestion", "complaint", "urgent_help"):
        rec = records[kind]
        assert rec.outcome == "queued" and rec.outcome_reason == kind, (kind, rec.outcome, rec.outcome_reason)
        assert by_name[kind].queued and by_name[kind].queue_reason == kind
        assert rec.flow_path[:5] == ["greeting", "open_cases", "hours_check", "front", "main_menu"]
        assert rec.digits[0]["digits"] == plans[kind][0][0]
        case = _case(hotline.sessions, rec.case_id)
        assert case.kind == CaseKind(kind) and case.status == CaseStatus.NEW
        assert case.citizen_phone == plans[kind][1] and case.channel == Channel.MOBILE  # R2.2
        assert case.created_by_call_id == rec.id

    for name in ("operator", "silence"):
        rec = records[name]
        assert rec.outcome == "queued" and rec.outcome_reason == "operator" and rec.case_id is None
        assert by_name[name].queued
    assert records["silence"].digits == [] or all(d["digits"] == "" for d in records["silence"].digits)

    invalid = records["invalid"]
    assert invalid.outcome == "queued" and invalid.outcome_reason == "invalid_input"
    assert [d["digits"] for d in invalid.digits] == ["9", "8", "7"]
    assert by_name["invalid"].prompts_for_input.count("main_menu") == 3

    progress = records["progress"]
    assert progress.case_id == known_id, "the call is linked to the case it looked up"
    assert progress.outcome == "self_served", (progress.outcome, progress.outcome_reason, progress.flow_path)
    assert any(d["digits"] == known_number.replace("-", "") for d in progress.digits)
    assert "progress_deadline" in progress.flow_path  # the deadline was spoken
    assert records["progress"].caller_number == "051087000001"

    heard = records["open_cases"].flow_path
    assert heard.index("open_cases_count") < heard.index("main_menu")  # open cases are heard first
    assert "open_cases_count" not in records["consultation"].flow_path


def _bo(session):
    from callcenter.auth import actor_of, create_user

    user = create_user(session, username="bo-live", password="password-123", role="back_office",
                       now=datetime.now(UTC))
    return actor_of(user)


async def test_a2_after_hours_message_becomes_a_case_with_its_recording(hotline, asterisk):
    # a city that keeps office hours (the shipped config answers 7x24, GB/T 33358-2016)
    policy = policy_from_mapping({"ivr": {"service_hours": {"default": ["08:00-20:00"]}}})
    hotline.domain = dataclasses.replace(hotline.domain, policy=policy)
    hotline.clock.now = AFTER_HOURS
    result = await simulate_call(hotline.ami, ["1"], caller="13800000099", talking=True, speak_seconds=3,
                                 hang_up_when_queued=False, timeout=120)
    rec = _call(hotline.sessions, result.uniqueid)
    assert rec.outcome == "message_left", (rec.outcome, rec.outcome_reason, rec.flow_path)
    assert "record_message" in rec.flow_path
    assert rec.recording_path and rec.recording_path.startswith(RECORDINGS_DIR)
    wav = host_path(asterisk, rec.recording_path)
    assert wav.exists() and wav.stat().st_size > 8000, "a real, non-empty recording"
    stat = subprocess.run(["sox", str(wav), "-n", "stat"], capture_output=True, text=True).stderr
    rms = float(next(line.split()[-1] for line in stat.splitlines() if line.startswith("RMS     amplitude")))
    assert rms > 0.005, f"the recording holds the caller's voice, not silence: {stat}"
    case = _case(hotline.sessions, rec.case_id)
    assert case.status == CaseStatus.NEW and case.citizen_phone == "13800000099"
    assert case.created_by_call_id == rec.id  # queued for a callback from the front desk's list


async def test_a2_agi_server_down_still_reaches_the_queue(hotline):
    await hotline.server.stop()
    result = await simulate_call(hotline.ami, [], caller="13800000077", timeout=30)
    assert result.queued and result.queue_reason == "agi-unreachable"
    with session_scope(hotline.sessions) as s:
        assert s.execute(select(Call).where(Call.uniqueid == result.uniqueid)).first() is None


async def test_a2_handler_that_raises_sends_the_call_to_the_queue(hotline):
    hotline.flows.clear()  # the handler blows up looking up its flow
    result = await simulate_call(hotline.ami, [], caller="13800000078", timeout=30)
    assert result.queued, result.events
    rec = _call(hotline.sessions, result.uniqueid)
    assert rec.outcome == "queued" and rec.outcome_reason == "error"
    assert hotline.server.stats.sent_to_safety >= 1


async def test_t1_a_complaint_phoned_in_on_2026_12_18_is_dispatched_with_a_provisional_deadline(hotline):
    """The year's-end cliff, through the real menu: key 3 on 2026-12-18 (no 2027 arrangement yet)
    opens a complaint; dispatching it gives a report limit in January 2027, counted on the
    statutory calendar and marked provisional, not a refusal."""
    from zoneinfo import ZoneInfo

    hotline.clock.set("2026-12-18T10:00")
    result = await simulate_call(hotline.ami, ["3"], caller="13800001218", hang_up_when_queued=True, timeout=120)
    rec = _call(hotline.sessions, result.uniqueid)
    assert rec.outcome == "queued" and rec.outcome_reason == "complaint" and rec.case_id is not None
    with session_scope(hotline.sessions) as s:
        wf = hotline.domain.workflow(s)
        case = wf.get_case(rec.case_id)
        assert case.number.startswith("20261218")
        (wo,) = wf.dispatch(_bo(s), case, units=["water_supply"])
        # R8.3, 10 working days: 12-21..25, 12-28..31 (9), 01-01 off, 01-04 (10).
        assert wo.report_due_at == datetime(2027, 1, 4, 17, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
        assert set(wo.provisional_deadlines) == {"report_due_at"}
        assert {"deadline_at", "callback_due_at", "close_due_at"} <= set(case.provisional_deadlines)
        number = case.number
    # The citizen asks for progress (key 5): the deadline is said, and that it is provisional.
    asked = await simulate_call(hotline.ami, ["5", number.replace("-", "") + "#", ""], caller="13800001218",
                                hang_up_when_queued=True, timeout=120)
    path = _call(hotline.sessions, asked.uniqueid).flow_path
    assert path.index("progress_deadline") < path.index("progress_deadline_provisional"), path


async def test_gb_t_33358_direct_mode_puts_a_caller_through_without_the_menu(hotline):
    """ivr.mode: direct — greeting, then an operator: no key asked before acceptance."""
    policy = dataclasses.replace(hotline.domain.policy, ivr=dataclasses.replace(hotline.domain.policy.ivr, mode="direct"))
    hotline.domain = dataclasses.replace(hotline.domain, policy=policy)
    result = await simulate_call(hotline.ami, [], caller="13800000098", timeout=60)
    assert result.queued and result.queue_reason == "operator" and not result.prompts_for_input
    rec = _call(hotline.sessions, result.uniqueid)
    assert rec.flow_path[-3:] == ["front", "to_operator", "operator_queue"] and "main_menu" not in rec.flow_path
