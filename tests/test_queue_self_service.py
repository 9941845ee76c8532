"""Self-service while waiting in the operator queue (issue 14 item 6; GB/T 33358-2016: 7x24, calls
answered within 15 s, no voice menu before acceptance, so the menu's self-service is offered while
the caller waits). A caller presses 5 in the queue, hears a case's progress from the main menu's own
key-5 step (ivr_flows/main.yaml entry `waiting`), goes back to the queue at their place and is one
offered call: never an abandon, the wait before stepping out counted in the call's wait.

The live proof on a real Asterisk is tests/live/test_queue_self_service_live.py.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from agi.hotline import IVR_ACTOR
from agi.testing import FakeAsterisk
from agi.waiting import EVENT
from callcenter.ami.protocol import Message
from callcenter.callcontrol.calllog import CallLog
from callcenter.callcontrol.wallboard import day_figures, today
from callcenter.runtime import agi_server
from callcenter.settings import Settings
from ivr_flows import PROMPTS_PATH, flow_path
from ivr_flows.actions import KNOWN_ACTIONS
from ivr_flows.check import UNKNOWN_NODE, check_flow
from ivr_flows.engine import Flow, FlowRunner, load_flow, load_prompts
from ivr_flows.scripted import ScriptedDriver
from ivr_flows.values import FlowError
from tests.conftest import CONFIG_DIR
from ticketing import calls as call_log
from ticketing.enums import CaseKind, Channel
from ticketing.figures import CallFigures, Period, Thresholds
from ticketing.missed_calls import missed_calls
from ticketing.models import Call, CallEvent
from ticketing.store import session_scope

MAIN = load_flow(flow_path("main"))
NUMBER = "20260304000001"


def _actions(found: bool = True):
    asked: list[str] = []

    def find_case(number):
        asked.append(number)
        return {"found": found, "status_prompt": "status_dispatched" if found else "", "deadline": "2026-03-11",
                "deadline_provisional": False}
    return {"find_case": find_case}, asked


async def _run(keys, *, found=True, entry="waiting"):
    actions, asked = _actions(found)
    driver = ScriptedDriver(keys)
    result = await FlowRunner(MAIN, driver, actions, {"caller": "13800000001", "mode": "direct"}, entry=entry).run()
    return result, asked, driver


# ---- the flow: the menu's key-5 step, entered from the queue ---------------------------------------

async def test_gbt33358_waiting_caller_hears_progress_by_the_menus_own_step_then_back_to_queue():
    result, asked, driver = await _run([NUMBER + "#"])
    assert asked == [NUMBER]
    assert (result.outcome, result.reason) == ("queued", "self_service_return")
    # the same nodes as key 5 of the menu (reused, not copied), then back to the queue
    assert result.path == ["waiting_progress", "progress_input", "progress_find", "progress_status",
                           "progress_has_deadline", "progress_deadline", "progress_deadline_kind", "progress_next",
                           "back_to_queue"]
    played = [p for e in driver.events if e[0] == "play" for p in e[1]]
    assert played[0] == "waiting_progress_intro" and played[-1] == "waiting_back_to_queue"
    assert "progress_operator_offer" not in played and "goodbye" not in played  # no hang-up offer here


async def test_waiting_caller_with_an_unknown_number_or_silence_goes_back_to_the_queue_too():
    result, _asked, _ = await _run([NUMBER + "#", NUMBER + "#"], found=False)
    assert (result.outcome, result.reason, result.path[-1]) == ("queued", "not_found", "not_found_queue")
    result, _asked, _ = await _run([""])  # silence: to an operator, i.e. the queue (no hours looked up)
    assert (result.outcome, result.reason, result.path[-1]) == ("queued", "operator", "operator_queue")


async def test_menu_key_5_is_unchanged_a_caller_who_rang_in_is_offered_an_operator_and_goodbye():
    """The menu's own use of the step (R7.2 self-service): status, then 0 for an operator or goodbye."""
    actions, _asked = _actions()
    flow = Flow(MAIN.name, "progress_input", MAIN.nodes, MAIN.inputs, entries=MAIN.entries)
    result = await FlowRunner(flow, ScriptedDriver([NUMBER + "#", ""]), actions,
                              {"caller": "13800000001", "mode": "menu"}).run()
    assert (result.outcome, result.path[-3:]) == ("self_served", ["progress_next", "progress_more", "progress_done"])


async def test_flow_entries_are_checked_and_an_unknown_entry_is_refused():
    assert check_flow(MAIN, set(KNOWN_ACTIONS), set(load_prompts(PROMPTS_PATH))) == []
    broken = Flow("x", "a", {"a": {"type": "end", "outcome": "queued"}}, entries={"waiting": "nowhere"})
    assert [(p.kind, p.node) for p in check_flow(broken, set(), set())] == [(UNKNOWN_NODE, None)]
    with pytest.raises(FlowError):
        FlowRunner(MAIN, ScriptedDriver([]), {}, {"mode": "menu"}, entry="nope")


# ---- the figures: one offered call, no abandon, the wait before stepping out counted ---------------

T0 = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 Shanghai


def _queue_call(s, uid: str, events: list[tuple[str, int, dict]], caller: str = "13900000077") -> int:
    """A call as the menu and the AMI call log write it; events (kind, seconds after T0, data)."""
    call_id = call_log.open_call(s, uniqueid=uid, started_at=T0, caller_number=caller)
    call_log.finish_call(s, call_id, outcome="queued", ended_at=T0, reason="operator")
    row = s.get(Call, call_id)
    for kind, after, data in events:
        at = T0 + timedelta(seconds=after)
        call_log.add_event(s, call_id, kind=kind, at=at, dedup_key=f"ami:{kind}:{uid}:{after}", data=data)
        call_log.apply_event(row, kind, at=at, uniqueid=uid)
    s.flush()
    return call_id


def test_gbt33358_a_caller_who_self_serves_and_returns_is_one_offered_call_never_an_abandon(sessions, domain):
    with session_scope(sessions) as s:
        # back after the progress and answered: waited 10 s, stepped out 30 s, waited 8 s more -> 18 s
        back = _queue_call(s, "q1", [("queued", 0, {}), ("queue_self_service", 10, {"waited": 10, "position": 1}),
                                     ("queue_returned", 40, {"position": 1}), ("queued", 40, {}),
                                     ("operator_connected", 48, {"holdtime": 8, "operator": "8001"})])
        # stepped out after 6 s and hung up while hearing the progress: not in the queue, no abandon
        gone = _queue_call(s, "q2", [("queued", 0, {}), ("queue_self_service", 6, {"waited": 6, "position": 2})],
                           caller="13900000078")
        # for comparison: a caller who hung up while waiting is an abandon
        _queue_call(s, "q3", [("queued", 0, {}), ("queue_abandoned", 20, {})], caller="13900000079")
    with sessions() as s:
        f = CallFigures(s)
        period = Period(T0 - timedelta(hours=1), T0 + timedelta(hours=1))
        q = f.queue(period)
        assert (q.offered, q.answered, q.abandoned) == (3, 1, 1)
        rows = {r.call_id: r for r in f.queue_calls(period)}
        assert (rows[back].answered, rows[back].abandoned, rows[back].wait_s) == (True, False, 18)
        assert (rows[gone].answered, rows[gone].abandoned) == (False, False)
        # 18 s in the queue in all: not within the 15 s of GB/T 33358 though the last stretch was 8 s
        assert q.answered_within.numerator == 0
        assert (s.get(Call, back).outcome, s.get(Call, gone).outcome) == ("answered", "queued")
        # the wallboard's day figures are these (callcontrol.wallboard.day_figures): no abandon either
        thresholds = Thresholds.for_policy(domain.policy)
        board = day_figures(s, today(T0, thresholds), thresholds)
        assert (board["offered"], board["answered"], board["abandoned"]) == (3, 1, 1)
        # 漏接回拨 lists abandons only: the self-served caller is not called back
        listed = missed_calls(s, T0 + timedelta(minutes=5), domain.policy)
        assert [m.number for m in listed] == ["13900000079"]


# ---- the call log: the dialplan's UserEvents of the exit and the return -----------------------------

def test_a2_call_log_records_the_exit_to_self_service_and_the_return(sessions):
    with session_scope(sessions) as s:
        call_id = _queue_call(s, "1733000000.5", [("queued", 0, {})])
    log = CallLog(sessions, "hotline-12345")
    written: list = []
    log.add = written.append  # the entries as the writer would get them

    def user_event(name, **fields):
        return Message([("Event", "UserEvent"), ("UserEvent", name), ("Uniqueid", "1733000000.5"),
                        ("Linkedid", "1733000000.5"), ("Channel", "Local/s@hotline-queue-0001;2"),
                        ("Timestamp", "1772589610.250000"), *fields.items()])
    log.on_event("userevent", user_event("CallcenterQueueSelfService", Key="5", Position="2", Waited="10"))
    log.on_event("userevent", user_event("CallcenterQueueReturn", Position="1", AgiStatus="SUCCESS"))
    log.on_event("userevent", user_event("CallcenterAwaitInput", Node="progress_input"))  # not a call-log fact
    assert [(e.kind, e.data.get("position"), e.data.get("waited"), e.data.get("key")) for e in written] == [
        ("queue_self_service", 2, 10.0, "5"), ("queue_returned", 1, None, None)]
    from callcenter.callcontrol.cel import CallLogWriter
    assert CallLogWriter(sessions).write(written).written == 2
    with sessions() as s:
        kinds = s.execute(select(CallEvent.kind).where(CallEvent.call_id == call_id).order_by(CallEvent.id)).scalars()
        assert list(kinds) == ["queued", "queue_self_service", "queue_returned"]


# ---- the AGI side: the call's record gets the self-service, its outcome stays -------------------------

def _caller_keys(number: str):
    def respond(command: str) -> str:
        upper = command.upper()
        if upper.startswith("GET DATA"):
            return f"200 result={number}"
        if upper.startswith(("STREAM FILE", "SAY")):
            return "200 result=0 endpos=160"
        return "200 result=1"
    return respond


async def test_a2_agi_ivr_waiting_records_the_self_service_on_the_menus_call(seeded, domain, engine, tmp_path):
    with session_scope(seeded) as s:
        case = domain.workflow(s).accept(IVR_ACTOR, kind=CaseKind.CONSULTATION, channel=Channel.LANDLINE, title="咨询",
                                         description="内容", citizen_phone="13800000002")
        number = case.number
        call_id = _queue_call(s, "1733000001.9", [("queued", 0, {})])  # the menu's call, now waiting
    server = agi_server(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine, port=0)
    await server.start()
    try:
        fake = FakeAsterisk("127.0.0.1", server.port, "ivr/waiting", uniqueid="1733000001.9",
                            callerid="13900000077", context="queue-self-service", args=["1733000001.9"])
        await fake.connect()
        commands = await fake.run(_caller_keys(number.replace("-", "")), timeout=20)
    finally:
        await server.stop()
    assert any("hotline/waiting_back_to_queue" in c for c in commands)
    with seeded() as s:
        call = s.get(Call, call_id)
        event = s.execute(select(CallEvent).where(CallEvent.call_id == call_id, CallEvent.kind == EVENT)).scalar_one()
        assert (call.outcome, s.execute(select(Call.id)).scalars().all()) == ("queued", [call_id])  # no second call
        assert (event.data["outcome"], event.data["reason"], event.data["case_number"]) == (
            "queued", "self_service_return", number)
        assert event.data["path"][:2] == ["waiting_progress", "progress_input"]

