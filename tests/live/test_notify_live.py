"""A voice notice on the real Asterisk (issue 14 item 5; R7.7 urge): the water company is urged; the
notice runner originates `Local/<duty A's number>@outbound-callback` (the ;2 half writes the ledger
entry, then rings `[unit-phones]`, which routes duty A's number to the baresip phone unit-a:
config/phone_routes.yaml); the phone auto-answers, `ivr/notify` reads the case and deadline, the
phone presses 1 (baresip `sndcode`, RFC 4733) and the acknowledgement is recorded against the urge.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from callback import notify as N
from callback.notify_runner import NoticeOptions, NoticeRunner
from callcenter.callbacks import LEDGER_FAMILY, AmiNoticePbx
from tests.live.callback_helpers import BACK_OFFICE
from tests.live.phones import start_phones, tone_wav
from ticketing.audit import SYSTEM
from ticketing.enums import CaseKind, Channel
from ticketing.models import AuditEvent, UnitNotification
from ticketing.notification_model import NotificationDelivery
from ticketing.store import session_scope

pytestmark = pytest.mark.live

DUTY_A = "13900002902"  # water_supply's duty A -> unit-a (config/phone_routes.yaml)
OUR_CHANNELS = "/^(Local/[0-9]+@(outbound-callback|unit-phones)-|PJSIP/unit-a-)/"  # cleaned up whatever happened


async def test_r7_7_an_urge_reaches_the_duty_phone_by_voice_and_key_1_is_recorded(hotline, asterisk, tmp_path):
    domain, sessions = hotline.domain, hotline.sessions
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        case = wf.accept(SYSTEM, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE, title="水压低",
                         description="三楼以上没水", citizen_phone="13800000001")
        (wo,) = wf.dispatch(BACK_OFFICE, case, units=["water_supply"])
        notice = wf.urge(BACK_OFFICE, wo, note="请尽快办理")
        s.flush()
        notice_id = notice.id
    prefix = f"n{uuid.uuid4().hex[:6]}-"
    runner = NoticeRunner(domain, sessions, AmiNoticePbx(hotline.ami),
                          NoticeOptions(channel_prefix=prefix, settle_seconds=0, check_seconds=1))
    Path(tmp_path).mkdir(parents=True, exist_ok=True)
    with start_phones(asterisk, tmp_path, ["unit-a"], audio_wav=tone_wav(tmp_path / "long.wav", 60)) as phones:
        phone = phones["unit-a"]
        try:
            assert await runner.sweep() == 1
            await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED", 15)
            deadline = time.monotonic() + 20
            state = None
            while time.monotonic() < deadline:
                # key 1, again every second until the flow has it (the greeting is not interruptible)
                await asyncio.to_thread(phone.command, "sndcode", "1")
                await asyncio.sleep(1)
                with session_scope(sessions) as s:
                    state = s.execute(select(NotificationDelivery.state)).scalar_one()
                if state == N.ACKNOWLEDGED:
                    break
            assert state == N.ACKNOWLEDGED, phone.events
            await runner.drain(timeout=15, poll=0.2)  # the call ends after the thanks; nothing else due
        finally:
            await runner.stop()
            await hotline.ami.send_action({"Action": "Hangup", "Channel": OUR_CHANNELS})
    with session_scope(sessions) as s:
        d = s.execute(select(NotificationDelivery)).scalar_one()
        assert (d.target_role, d.phone, d.tries) == ("A", DUTY_A, 0)
        assert s.get(UnitNotification, notice_id).delivered is True
        ack = s.execute(select(AuditEvent).where(AuditEvent.action == "urge_acknowledged")).scalar_one()
        assert ack.call_id is not None  # the notice call is in the call log (A2)
    _resp, items = await hotline.ami.send_action_list({"Action": "DBGetTree", "Family": LEDGER_FAMILY}, timeout=5)
    assert not [i for i in items if prefix in (i.get_first("Key") or "")]  # its ledger entry went once settled
