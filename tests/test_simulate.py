"""`callcenter call simulate` tells in words what happened (issue 19 item 7), from the call record."""
from __future__ import annotations

from datetime import UTC, datetime

from callcenter.simulate import SimulatedCall
from callcenter.simulate_report import CallRecordView, describe, load_record, prompts_heard
from ticketing.audit import SYSTEM
from ticketing.calls import finish_call, open_call
from ticketing.policy import policy_from_mapping
from ticketing.store import session_scope

SATURDAY_NIGHT = datetime(2026, 3, 7, 14, 10, tzinfo=UTC)  # Saturday 22:10 in Shanghai
CALLER = "13812345678"
NIGHT_PATH = ["greeting", "open_cases", "hours_check", "closed_notice", "closed_menu", "closed_goodbye"]
# as Asterisk reports them in AGIExecStart
NIGHT_COMMANDS = ['STREAM FILE hotline/welcome "0123456789*#"', 'STREAM FILE hotline/emergency_notice "0123456789*#"',
                  'STREAM FILE hotline/closed_notice ""', "GET DATA hotline/closed_offer_message 6000 1",
                  'STREAM FILE hotline/goodbye ""']


def sim(**fields) -> SimulatedCall:
    return SimulatedCall(uniqueid="sim-1;2", caller=CALLER, seconds=12.3, **fields)


def test_after_hours_says_the_branch_and_why_from_the_policy_rule():
    record = CallRecordView("abandoned", "hangup", NIGHT_PATH, [{"node": "closed_menu", "digits": "2"}],
                            SATURDAY_NIGHT)
    policy = policy_from_mapping({"ivr": {"service_hours": {"default": ["08:00-20:00"]}}})
    text = "\n".join(describe(sim(commands=NIGHT_COMMANDS, keys_sent=["2"]), record, policy))
    assert "after-hours branch: closed: outside service hours 08:00–20:00 Asia/Shanghai, now 22:10 Saturday" in text
    assert "outcome: the call ended in the menu (the caller hung up)" in text
    assert "path: greeting → open_cases → hours_check → closed_notice → closed_menu → closed_goodbye" in text
    assert "prompts heard: welcome, emergency_notice, closed_notice, closed_offer_message, goodbye" in text
    assert "keys: 2 at closed_menu" in text
    assert CALLER not in text and "138****5678" in text  # personal data masked


def test_the_explanation_follows_the_configured_hours_not_a_copy():
    policy = policy_from_mapping({"ivr": {"service_hours": {"default": ["08:30-17:30"], "sat": []}}})
    record = CallRecordView("abandoned", "hangup", NIGHT_PATH, [], SATURDAY_NIGHT.replace(hour=2))  # 10:10
    text = "\n".join(describe(sim(), record, policy))
    assert "after-hours branch: closed: outside service hours none that day Asia/Shanghai, now 10:10 Saturday" in text
    weekday = CallRecordView("queued", "operator", ["greeting", "open_cases", "hours_check", "front", "main_menu",
                                                    "to_operator", "operator_queue"],
                             [{"node": "main_menu", "digits": "0"}], datetime(2026, 3, 9, 2, 0, tzinfo=UTC))
    text = "\n".join(describe(sim(), weekday, policy))
    assert "main menu: open: within service hours 08:30–17:30 Asia/Shanghai, now 10:00 Monday" in text
    assert policy.ivr_open_at(weekday.started_at) and not policy.ivr_open_at(record.started_at)


def test_queued_with_its_reason_and_the_case_created_with_its_number(engine, sessions, domain):
    """A2: the record the menu wrote is what is told: outcome, reason, case number, path, keys."""
    with session_scope(sessions) as s:
        call_id = open_call(s, uniqueid="sim-2;2", caller_number=CALLER, started_at=domain.clock())
        case = domain.workflow(s).accept(SYSTEM, kind="consultation", channel="mobile", title="t", description="d",
                                         citizen_phone=CALLER, call_id=call_id)
        finish_call(s, call_id, outcome="queued", reason="consultation", ended_at=domain.clock(), case_id=case.id,
                    flow_path=["greeting", "open_cases", "hours_check", "main_menu", "create_consultation",
                               "consultation_number", "consultation_queue"],
                    digits=[{"node": "main_menu", "digits": "1"}])
        number = case.number
    with session_scope(sessions) as s:
        record = load_record(s, "sim-2;2")
        assert load_record(s, "sim-none;2") is None
    commands = ['STREAM FILE hotline/welcome "0123456789*#"',
                "EXEC Read IVR_DIGITS,hotline/menu_consultation&hotline/menu_operator,1,,1,5",
                'STREAM FILE hotline/case_number_is ""', f'SAY DIGITS {number.replace("-", "")} ""']
    text = "\n".join(describe(sim(commands=commands, queued=True, queue_reason="consultation"), record,
                              domain.policy))
    assert "outcome: queued for an operator, reason consultation: a consultation case was opened" in text
    assert f"case created: {number} (consultation)" in text
    assert "main menu: open: within service hours" in text  # Monday 09:00 in Shanghai
    assert f"prompts heard: welcome, menu_consultation, menu_operator, case_number_is, #{number.replace('-', '')}" in text


def test_without_a_call_record_it_says_so_and_tells_what_the_ami_saw(base_domain):
    lines = describe(sim(prompts_for_input=["main_menu"], keys_sent=["1"], queued=True, queue_reason="consultation"),
                     None, base_domain.policy)
    assert "no call record in the store" in lines[1]
    assert lines[2:] == ["  menu asked for input at: main_menu", "  keys sent: 1",
                         "  queued for an operator: yes (consultation)"]


def test_prompts_heard_reads_the_prompt_names_and_what_was_said():
    assert prompts_heard(["SAY NUMBER 2 \"0123456789*#\"", "ANSWER", "STREAM FILE bench-silent/welcome \"\"",
                          "GET FULL VARIABLE ${READSTATUS}"]) == ["#2", "welcome"]
