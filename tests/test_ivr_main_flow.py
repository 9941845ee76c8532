"""The default 12345 menu (ivr_flows/main.yaml), every branch, with a scripted caller."""
from __future__ import annotations

from typing import Any

import pytest

from ivr_flows import flow_path
from ivr_flows.engine import FlowRunner, load_flow
from ivr_flows.scripted import ScriptedDriver

CALLER = "13812345678"
NEW_CASE = "20250301-000123"
MENU_PROMPTS = ["menu_consultation", "menu_suggestion", "menu_complaint", "menu_urgent_help",
                "menu_progress", "menu_operator"]


class FakeApp:
    """The application's side of the actions, recording every call."""

    def __init__(self, *, open_count: int = 0, in_hours: bool = True,
                 found: list[dict[str, Any]] | None = None, fail: str | None = None) -> None:
        self.open_count = open_count
        self.in_hours = in_hours
        self.found = list(found or [])
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _log(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))
        if name == self.fail:
            raise RuntimeError("database is down")

    async def caller_open_cases(self, caller: str) -> dict[str, Any]:
        self._log("caller_open_cases", caller=caller)
        if not self.open_count:
            return {"count": 0, "latest_number": None, "latest_status_prompt": None}
        return {"count": self.open_count, "latest_number": "20250210-000042",
                "latest_status_prompt": "status_dispatched"}

    async def in_service_hours(self) -> dict[str, Any]:
        self._log("in_service_hours")
        return {"open": self.in_hours}

    async def create_case(self, caller: str, kind: str) -> dict[str, Any]:
        self._log("create_case", caller=caller, kind=kind)
        return {"case_number": NEW_CASE}

    async def find_case(self, number: str) -> dict[str, Any]:
        self._log("find_case", number=number)
        return self.found.pop(0) if self.found else {"found": False}

    async def leave_message(self, caller: str, recording: str) -> dict[str, Any]:
        self._log("leave_message", caller=caller, recording=recording)
        return {"case_number": "20250301-000777"}

    def actions(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in
                ("caller_open_cases", "in_service_hours", "create_case", "find_case", "leave_message")}

    def called(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for n, kwargs in self.calls if n == name]


@pytest.fixture(scope="module")
def main_flow():
    return load_flow(flow_path("main"))


async def run(flow, driver: ScriptedDriver, app: FakeApp, mode: str = "menu"):
    return await FlowRunner(flow, driver, app.actions(), {"caller": CALLER, "mode": mode}).run()


@pytest.mark.parametrize(
    "key, kind",
    [("1", "consultation"), ("2", "suggestion"), ("3", "complaint"), ("4", "urgent_help")],
)
async def test_r2_1_keys_1_to_4_open_a_case_of_that_kind_and_queue(main_flow, key, kind):
    driver, app = ScriptedDriver([key]), FakeApp()
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.reason) == ("queued", kind)
    assert app.called("create_case") == [{"caller": CALLER, "kind": kind}]
    # The caller hears the new case number (without the dash) before the transfer.
    assert ("say_digits", "20250301000123") in driver.events
    played = driver.played()
    assert played.index("case_number_is") < played.index("transfer_to_operator")
    assert result.path[:5] == ["greeting", "open_cases", "hours_check", "front", "main_menu"]
    assert result.digits == [{"node": "main_menu", "digits": key}]


async def test_greeting_names_the_hotline_and_the_emergency_numbers_first(main_flow):
    driver = ScriptedDriver(["0"])
    await run(main_flow, driver, FakeApp())
    assert driver.events[0] == ("play", ["welcome", "emergency_notice"], True)


async def test_key_0_queues_for_an_operator(main_flow):
    driver, app = ScriptedDriver(["0"]), FakeApp()
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.reason) == ("queued", "operator")
    assert app.called("create_case") == []


async def test_silence_at_the_menu_queues_for_an_operator(main_flow):
    driver = ScriptedDriver([""])
    result = await run(main_flow, driver, FakeApp())
    assert (result.outcome, result.reason) == ("queued", "operator")
    assert result.digits == [{"node": "main_menu", "digits": ""}]


async def test_three_invalid_keys_queue_with_reason_invalid_input(main_flow):
    driver = ScriptedDriver(["7", "9", "*", "1"])
    result = await run(main_flow, driver, FakeApp())
    assert (result.outcome, result.reason) == ("queued", "invalid_input")
    assert [d["digits"] for d in result.digits] == ["7", "9", "*"]
    assert driver.keys == ["1"]  # no fourth try
    assert driver.played().count("invalid_key") == 2  # re-prompted twice, then transferred
    assert driver.played()[-1] == "invalid_transfer"


async def test_invalid_key_then_valid_choice_reprompts_the_menu(main_flow):
    driver, app = ScriptedDriver(["8", "2"]), FakeApp()
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.reason) == ("queued", "suggestion")
    reads = [e for e in driver.events if e[0] == "read"]
    assert [r[1] for r in reads] == [MENU_PROMPTS, MENU_PROMPTS]
    assert "invalid_key" in driver.played()


async def test_await_input_is_notified_right_before_every_digit_read(main_flow):
    driver = ScriptedDriver(["8", "0"])
    await run(main_flow, driver, FakeApp())
    for i, event in enumerate(driver.events):
        if event[0] == "read":
            assert driver.events[i - 1] == ("notify", "AwaitInput", {"node": "main_menu"})
    assert sum(1 for e in driver.events if e[0] == "read") == 2


async def test_progress_found_says_status_and_deadline_then_self_served(main_flow):
    app = FakeApp(found=[{"found": True, "status_prompt": "status_dispatched",
                          "deadline": "2025-03-14T17:30:00+08:00"}])
    driver = ScriptedDriver(["5", "20250301000123#", ""])
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.reason) == ("self_served", None)
    assert app.called("find_case") == [{"number": "20250301000123"}]
    read = [e for e in driver.events if e[0] == "read"][1]
    assert read[1:] == (["progress_enter_number"], 14, 10.0, "#")
    tail = driver.events[driver.events.index(("play", ["progress_status_is"], False)):]
    assert tail[1:7] == [
        ("play", ["status_dispatched"], False),
        ("play", ["progress_deadline_is"], False),
        ("say_number", 3), ("play", ["date_month"], False),
        ("say_number", 14), ("play", ["date_day"], False),
    ]
    assert driver.played()[-1] == "goodbye"


async def test_t1_a_provisional_deadline_is_said_to_be_provisional(main_flow):
    app = FakeApp(found=[{"found": True, "status_prompt": "status_dispatched", "deadline": "2027-01-04",
                          "deadline_provisional": True}])
    driver = ScriptedDriver(["5", "20261218000001#", ""])
    result = await run(main_flow, driver, app)
    assert result.outcome == "self_served"
    played = driver.played()
    assert played.index("date_day") < played.index("progress_deadline_provisional") < played.index("goodbye")
    # an official deadline is said without it
    app = FakeApp(found=[{"found": True, "status_prompt": "status_dispatched", "deadline": "2026-12-31",
                          "deadline_provisional": False}])
    driver = ScriptedDriver(["5", "20261217000001#", ""])
    await run(main_flow, driver, app)
    assert "progress_deadline_provisional" not in driver.played()


async def test_progress_without_deadline_skips_the_date(main_flow):
    app = FakeApp(found=[{"found": True, "status_prompt": "status_closed", "deadline": None}])
    driver = ScriptedDriver(["5", "20250301000123#", ""])
    result = await run(main_flow, driver, app)
    assert result.outcome == "self_served"
    assert "status_closed" in driver.played()
    assert "date_month" not in driver.played()


async def test_progress_then_0_reaches_an_operator(main_flow):
    app = FakeApp(found=[{"found": True, "status_prompt": "status_reported", "deadline": "2025-03-14"}])
    driver = ScriptedDriver(["5", "20250301000123#", "0"])
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.reason) == ("queued", "operator")


async def test_progress_not_found_is_retried_once(main_flow):
    app = FakeApp(found=[{"found": False},
                         {"found": True, "status_prompt": "status_new", "deadline": "2025-03-14"}])
    driver = ScriptedDriver(["5", "20250301999999#", "20250301000123#", ""])
    result = await run(main_flow, driver, app)
    assert result.outcome == "self_served"
    assert [c["number"] for c in app.called("find_case")] == ["20250301999999", "20250301000123"]
    assert "case_not_found_retry" in driver.played()


async def test_progress_not_found_twice_queues_with_reason_not_found(main_flow):
    driver, app = ScriptedDriver(["5", "20250301999999#", "20250301999998#"]), FakeApp()
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.reason) == ("queued", "not_found")
    assert len(app.called("find_case")) == 2


async def test_progress_number_of_wrong_length_three_times_queues_invalid_input(main_flow):
    driver, app = ScriptedDriver(["5", "123#", "2025030100012#", "9#"]), FakeApp()
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.reason) == ("queued", "invalid_input")
    assert app.called("find_case") == []
    assert driver.played().count("progress_bad_number") == 2


async def test_progress_silence_at_number_entry_reaches_an_operator(main_flow):
    result = await run(main_flow, ScriptedDriver(["5", ""]), FakeApp())
    assert (result.outcome, result.reason) == ("queued", "operator")


async def test_open_cases_are_heard_before_the_menu(main_flow):
    driver = ScriptedDriver(["0"])
    result = await run(main_flow, driver, FakeApp(open_count=2))
    kinds = driver.kinds()
    assert kinds.index("say_number") < kinds.index("read")
    assert ("say_number", 2) in driver.events
    assert ("say_digits", "20250210000042") in driver.events
    assert ("play", ["status_dispatched"], True) in driver.events
    assert result.path[:5] == ["greeting", "open_cases", "open_cases_count", "open_cases_latest",
                               "open_cases_status"]


async def test_no_open_cases_says_nothing_about_them(main_flow):
    driver, app = ScriptedDriver(["0"]), FakeApp(open_count=0)
    await run(main_flow, driver, app)
    assert app.called("caller_open_cases") == [{"caller": CALLER}]
    assert "say_number" not in driver.kinds()
    assert "open_cases_you_have" not in driver.played()


async def test_barge_in_during_greeting_reaches_the_menu(main_flow):
    driver, app = ScriptedDriver([], barge={"emergency_notice": "3"}), FakeApp()
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.reason) == ("queued", "complaint")
    assert result.digits == [{"node": "main_menu", "digits": "3"}]
    # The menu did not make the caller wait through its prompts again.
    assert "read" not in driver.kinds()


async def test_barge_in_during_the_greeting_also_skips_the_open_case_notice(main_flow):
    """A repeat caller who keys ahead in the greeting is not held through the notice (issue 19)."""
    driver, app = ScriptedDriver([], barge={"welcome": "0"}), FakeApp(open_count=1)
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.reason) == ("queued", "operator")
    assert app.called("caller_open_cases") == [{"caller": CALLER}]  # still looked up (screen-pop, R7.3)
    assert "say_number" not in driver.kinds() and "open_cases_you_have" not in driver.played()


@pytest.mark.parametrize("barge", [
    {"open_cases_you_have": "1"},   # the lead-in
    {"say_number": "1"},            # how many
    {"say_digits": "1"},            # the latest number, digit by digit
    {"status_dispatched": "1"},     # its status
])
async def test_r2_1_key_1_during_the_open_case_notice_reaches_the_consultation_branch(main_flow, barge):
    """R2.1 / issue 19 item 7: the open-case notice can be interrupted and the key counts at the main menu."""
    driver, app = ScriptedDriver([], barge=barge), FakeApp(open_count=2)
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.reason) == ("queued", "consultation")
    assert app.called("create_case") == [{"caller": CALLER, "kind": "consultation"}]
    assert result.digits == [{"node": "main_menu", "digits": "1"}]
    assert "read" not in driver.kinds()            # the menu prompts were not made to play first
    assert result.path[-4:] == ["main_menu", "create_consultation", "consultation_number", "consultation_queue"]
    # the rest of the notice was skipped once the key came
    if "say_number" in barge:
        assert ("say_digits", "20250210000042") not in driver.events
        assert "status_dispatched" not in driver.played()
    if "open_cases_you_have" in barge:
        assert "say_number" not in driver.kinds()


async def test_a_key_during_the_open_case_notice_at_night_does_not_answer_the_closed_menu(main_flow):
    """The after-hours notice must be heard: a key meant for the day menu is dropped before it."""
    driver, app = ScriptedDriver(["2"], barge={"say_number": "1"}), FakeApp(open_count=1, in_hours=False)
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.path[-1]) == ("abandoned", "closed_goodbye")
    assert result.digits == [{"node": "closed_menu", "digits": "2"}]
    assert "closed_notice" in driver.played() and app.called("create_case") == []


async def test_after_hours_message_is_saved_and_its_number_said(main_flow):
    driver, app = ScriptedDriver(["1"]), FakeApp(in_hours=False)
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.reason) == ("message_left", None)
    assert app.called("leave_message") == [{"caller": CALLER, "recording": "recordings/message-1.wav"}]
    assert ("record", "after_hours_message", 120) in driver.events
    assert ("say_digits", "20250301000777") in driver.events
    assert driver.played()[:3] == ["welcome", "emergency_notice", "closed_notice"]
    assert app.called("create_case") == []


async def test_after_hours_hangup_after_speaking_still_counts_as_message_left(main_flow):
    driver, app = ScriptedDriver(["1"], hangup_after_record=True), FakeApp(in_hours=False)
    result = await run(main_flow, driver, app)
    assert result.outcome == "message_left"
    assert len(app.called("leave_message")) == 1


async def test_after_hours_empty_recording_ends_without_a_message(main_flow):
    driver, app = ScriptedDriver(["1"], recording=None), FakeApp(in_hours=False)
    result = await run(main_flow, driver, app)
    assert result.outcome == "abandoned"
    assert app.called("leave_message") == []
    assert result.path[-1] == "no_message"


@pytest.mark.parametrize("keys", [["2"], [""]])
async def test_after_hours_declining_or_silence_ends_abandoned(main_flow, keys):
    driver, app = ScriptedDriver(keys), FakeApp(in_hours=False)
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.path[-1]) == ("abandoned", "closed_goodbye")
    assert "record" not in driver.kinds()


async def test_after_hours_key_pressed_during_greeting_is_not_taken_as_leave_message(main_flow):
    # "1" meant consultation in the day menu; after hours it must not start a recording.
    driver = ScriptedDriver(["2"], barge={"welcome": "1"})
    result = await run(main_flow, driver, FakeApp(in_hours=False))
    assert result.path[-1] == "closed_goodbye"
    assert result.digits == [{"node": "closed_menu", "digits": "2"}]


async def test_hangup_ends_abandoned_with_the_path_so_far(main_flow):
    driver, app = ScriptedDriver([]), FakeApp()  # hangs up at the menu
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.reason) == ("abandoned", "hangup")
    assert result.path == ["greeting", "open_cases", "hours_check", "front", "main_menu"]


async def test_hangup_during_greeting(main_flow):
    driver, app = ScriptedDriver(["1"], hangup_on_prompt="welcome"), FakeApp()
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.path) == ("abandoned", ["greeting"])
    assert app.calls == []


@pytest.mark.parametrize("failing, keys", [("create_case", ["1"]), ("caller_open_cases", []),
                                           ("find_case", ["5", "20250301000123#"])])
async def test_action_error_queues_the_caller_with_reason_error(main_flow, failing, keys):
    driver = ScriptedDriver(keys)
    result = await run(main_flow, driver, FakeApp(fail=failing))
    assert (result.outcome, result.reason) == ("queued", "error")
    assert "database is down" in result.error
    assert result.error.startswith(result.path[-1])


# ---- GB/T 33358-2016: no menu before acceptance (ivr.mode: direct), self-service after hours ----

async def test_direct_mode_puts_the_caller_through_after_the_greeting(main_flow):
    driver, app = ScriptedDriver([]), FakeApp(open_count=1)
    result = await run(main_flow, driver, app, mode="direct")
    assert (result.outcome, result.reason) == ("queued", "operator")
    assert result.path == ["greeting", "open_cases", "open_cases_count", "open_cases_latest", "open_cases_status",
                           "hours_check", "front", "to_operator", "operator_queue"]
    assert not any(p in driver.played() for p in MENU_PROMPTS) and result.digits == []


async def test_direct_mode_after_hours_still_offers_a_message(main_flow):
    driver, app = ScriptedDriver(["1"]), FakeApp(in_hours=False)
    result = await run(main_flow, driver, app, mode="direct")
    assert result.outcome == "message_left" and app.called("leave_message")


async def test_after_hours_key_5_hears_the_progress_of_a_case(main_flow):
    found = {"found": True, "status_prompt": "status_dispatched", "deadline": "2025-03-10", "deadline_provisional": False}
    driver, app = ScriptedDriver(["5", "20250210000042", ""]), FakeApp(in_hours=False, found=[found])
    result = await run(main_flow, driver, app)
    assert (result.outcome, result.path[-1]) == ("self_served", "progress_done")
    assert app.called("find_case") == [{"number": "20250210000042"}]


@pytest.mark.parametrize("keys", [["5", "20250210000042", "0"], ["5", "", ], ["5", "1", "2", "3"],
                                  ["5", "20250210000042", "20250210000043"]])
async def test_after_hours_the_progress_enquiry_never_queues_for_an_absent_operator(main_flow, keys):
    found = [{"found": True, "status_prompt": "status_dispatched", "deadline": None, "deadline_provisional": False}]
    driver, app = ScriptedDriver(keys), FakeApp(in_hours=False, found=found if keys[-1] == "0" else [])
    result = await run(main_flow, driver, app)
    assert result.outcome == "abandoned" and result.path[-1] == "closed_goodbye", result.path
