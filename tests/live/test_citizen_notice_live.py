"""An R8.2 notice to the citizen on the real Asterisk (issue 14; R8.2, R2.2): the water company
records that it notified the citizen by the hotline's voice call (`auto_voice`); the notice runner
(the same as R7.7 urges', tests/live/test_notify_live.py) originates
`Local/<citizen's number>@outbound-callback` without CALLBACK_PHONES, so the ;2 half writes the
ledger entry and rings the citizen's line (`[citizen-phones]`: 138... answers and stays silent);
answered, `ivr/notify` finds the key's citizen notice and plays ivr_flows/citizen_notice.yaml: the
case number, the unit's name (its rendered prompt), the answer's deadline; heard to its end the
delivery is recorded on the case, then the "press 1 to hear it again" menu times out and the call ends.

Needs the prompts of this change (citizen_notice_*, unit_*): `callcenter asterisk install` renders them.
"""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from callback import notify as N
from callback.notify_runner import NoticeOptions, NoticeRunner
from callcenter.callbacks import LEDGER_FAMILY, AmiNoticePbx
from tests.live.callback_helpers import BACK_OFFICE
from ticketing.audit import SYSTEM, Actor
from ticketing.enums import CaseKind, Channel
from ticketing.models import AuditEvent, Call, Case, MemberUnit
from ticketing.notification_model import NotificationDelivery
from ticketing.store import session_scope

pytestmark = pytest.mark.live

CITIZEN = "13800000001"  # [citizen-phones]: 1... answers (extensions_testing.conf)
OUR_CHANNELS = "/^Local/[0-9]+@(outbound-callback|citizen-phones)-/"  # cleaned up whatever happened


async def test_r8_2_a_citizens_notice_reaches_the_citizens_line_by_voice_and_its_delivery_is_recorded(hotline, asterisk):
    domain, sessions = hotline.domain, hotline.sessions
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        case = wf.accept(SYSTEM, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE, title="水压低",
                         description="三楼以上没水", citizen_phone=CITIZEN)
        (wo,) = wf.dispatch(BACK_OFFICE, case, units=["water_supply"])
        unit_id = s.execute(select(MemberUnit.id).where(MemberUnit.code == "water_supply")).scalar_one()
        wf.notify(Actor(user_id=None, name="water-staff", role="unit_staff", unit_id=unit_id), wo, channel="auto_voice")
        number, case_id = case.number, case.id
    played: list[str] = []
    dialled: list[str] = []
    sub_agi = hotline.ami.subscribe(lambda e: played.append(e.get_first("Command") or ""), ["AGIExecStart"])
    sub_chan = hotline.ami.subscribe(lambda e: dialled.append(e.get_first("Channel") or ""), ["Newchannel"])
    prefix = f"c{uuid.uuid4().hex[:6]}-"
    runner = NoticeRunner(domain, sessions, AmiNoticePbx(hotline.ami),
                          NoticeOptions(channel_prefix=prefix, settle_seconds=0, check_seconds=1, end_grace=3))
    try:
        assert await runner.sweep() == 1
        await runner.drain(timeout=120, poll=0.5)  # the whole call: notice, menu timeout, goodbye
    finally:
        await runner.stop()
        sub_agi.close()
        sub_chan.close()
        await hotline.ami.send_action({"Action": "Hangup", "Channel": OUR_CHANNELS})
    assert any(c.startswith(f"Local/{CITIZEN}@citizen-phones") for c in dialled), dialled  # the citizen's line
    assert not any("@unit-phones" in c for c in dialled)
    spoken = "\n".join(played)
    for prompt in ("citizen_notice_greeting", "citizen_notice_your_case", "unit_water_supply",
                   "citizen_notice_due_is", "citizen_notice_press_keys", "citizen_notice_goodbye"):
        assert f"hotline/{prompt}" in spoken, (prompt, played)
    assert number.replace("-", "") in spoken  # SAY DIGITS of the case number
    with session_scope(sessions) as s:
        d = s.execute(select(NotificationDelivery)).scalar_one()
        assert (d.state, d.target_role, d.phone, d.tries) == (N.ACKNOWLEDGED, N.CITIZEN, CITIZEN, 0)
        event = s.execute(select(AuditEvent).where(AuditEvent.action == "unit_notice_delivered")).scalar_one()
        assert event.case_id == case_id and event.call_id is not None  # on the case, with its call (A2)
        call = s.get(Call, event.call_id)
        assert call.purpose == "notice" and call.direction == "outbound"
        assert s.get(Case, case_id).number == number
    _resp, items = await hotline.ami.send_action_list({"Action": "DBGetTree", "Family": LEDGER_FAMILY}, timeout=5)
    assert not [i for i in items if prefix in (i.get_first("Key") or "")]  # its ledger entry went once settled
