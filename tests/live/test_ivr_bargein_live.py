"""The open-case notice on the real Asterisk: a key pressed while it plays ends it and counts at the
main menu (issue 19 item 7)."""
from __future__ import annotations

from sqlalchemy import select

from callcenter.simulate import simulate_call
from callcenter.simulate_report import describe, load_record, prompts_heard
from ticketing.audit import SYSTEM
from ticketing.enums import CaseKind, CaseStatus, Channel
from ticketing.models import Call, Case
from ticketing.store import session_scope

CALLER = "13900000077"


async def test_r2_1_repeat_caller_presses_1_during_the_open_case_notice_and_reaches_consultation(hotline):
    """R2.1: key 1 pressed while the open case's number is read out skips the rest of the notice and
    opens a consultation case at the main menu, which asks for nothing (the key was already pressed)."""
    with session_scope(hotline.sessions) as s:
        open_case = hotline.domain.workflow(s).accept(
            SYSTEM, kind=CaseKind.COMPLAINT, channel=Channel.MOBILE, title="噪音扰民", description="夜间施工",
            citizen_phone=CALLER)
        open_number = open_case.number

    result = await simulate_call(hotline.ami, [], caller=CALLER, barge={"SAY DIGITS": "1"}, timeout=90)

    assert result.queued and result.queue_reason == "consultation", result.events
    assert result.keys_sent == ["1"] and result.prompts_for_input == []
    said = [c for c in result.commands if c.startswith("SAY DIGITS")]
    assert said and said[0].split()[2] == open_number.replace("-", "")  # the key came during the notice
    with session_scope(hotline.sessions) as s:
        call = s.execute(select(Call).where(Call.uniqueid == result.uniqueid)).scalar_one()
        assert call.flow_path[:4] == ["greeting", "open_cases", "open_cases_count", "open_cases_latest"]
        assert call.flow_path[-4:] == ["main_menu", "create_consultation", "consultation_number",
                                       "consultation_queue"]
        assert call.digits == [{"node": "main_menu", "digits": "1"}]
        assert (call.outcome, call.outcome_reason) == ("queued", "consultation")
        case = s.get(Case, call.case_id)
        assert case.kind == CaseKind.CONSULTATION and case.status == CaseStatus.NEW
        assert case.citizen_phone == CALLER
    # the rest of the notice (the case's status) never started; the menu's prompts neither
    played = " ".join(c for c in result.commands if c.startswith(("STREAM FILE", "GET DATA", "EXEC Read")))
    assert "open_cases_status_is" not in played and "menu_consultation" not in played, result.commands
    # `call simulate` tells it in words, from the same record and what Asterisk reported
    heard = prompts_heard(result.commands)
    assert heard[:3] == ["welcome", "emergency_notice", "open_cases_you_have"], heard
    assert "open_cases_status_is" not in heard
    with session_scope(hotline.sessions) as s:
        text = "\n".join(describe(result, load_record(s, result.uniqueid), hotline.domain.policy))
    assert f"case created: {case.number} (consultation)" in text, text
    assert "reason consultation" in text and "main menu: open: within service hours" in text, text
