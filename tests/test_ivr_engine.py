"""Flow engine semantics on small hand-made flows (telephony-agnostic by design)."""
from __future__ import annotations

import pytest

from ivr_flows.engine import Flow, FlowError, FlowRunner, load_flow, load_prompts
from ivr_flows.scripted import ScriptedDriver
from ticketing.privacy import mask_text


def flow(nodes: dict, start: str = "a", **extra) -> Flow:
    return Flow.from_dict({"start": start, "nodes": nodes, **extra}, name="t")


END = {"type": "end", "outcome": "self_served"}


async def test_runtime_loop_is_cut_and_the_caller_queued():
    f = flow({"a": {"type": "play", "prompts": ["x"], "next": "b"},
              "b": {"type": "play", "prompts": ["y"], "next": "a"}})
    result = await FlowRunner(f, ScriptedDriver(), {}, {}, max_steps=50).run()
    assert (result.outcome, result.reason) == ("queued", "loop")
    assert len(result.path) == 50


async def test_default_step_limit_is_200():
    f = flow({"a": {"type": "play", "prompts": ["x"], "next": "a"}})
    result = await FlowRunner(f, ScriptedDriver(), {}, {}).run()
    assert (result.reason, len(result.path)) == ("loop", 200)


async def test_unregistered_action_queues_with_error():
    f = flow({"a": {"type": "action", "action": "nope", "next": "z"}, "z": END})
    result = await FlowRunner(f, ScriptedDriver(), {}, {}).run()
    assert (result.outcome, result.reason, result.path) == ("queued", "error", ["a"])
    assert "nope" in result.error


async def test_sync_action_args_resolve_variables_and_dotted_results():
    seen = {}

    def lookup(number, literal, nested):
        seen.update(number=number, literal=literal, nested=nested)
        return {"info": {"level": 3}}

    f = flow({
        "a": {"type": "action", "action": "lookup", "store": "r",
              "args": {"number": "$caller", "literal": "$$5 fee", "nested": ["$caller", 1]},
              "next": "b"},
        "b": {"type": "say", "number": "$r.info.level", "next": "z"},
        "z": END,
    })
    driver = ScriptedDriver()
    result = await FlowRunner(f, driver, {"lookup": lookup}, {"caller": "055512345"}).run()
    assert seen == {"number": "055512345", "literal": "$5 fee", "nested": ["055512345", 1]}
    assert ("say_number", 3) in driver.events
    assert result.variables["r"] == {"info": {"level": 3}}


async def test_input_barge_in_digit_is_the_first_digit_of_the_entry():
    f = flow({
        "a": {"type": "play", "prompts": ["intro"], "next": "b"},
        "b": {"type": "input", "prompts": ["enter"], "max_digits": 4, "store": "n", "next": "z",
              "on_fail": "z"},
        "z": END,
    })
    driver = ScriptedDriver(["234#"], barge={"intro": "1"})
    result = await FlowRunner(f, driver, {}, {}).run()
    assert result.variables["n"] == "1234"
    read = next(e for e in driver.events if e[0] == "read")
    assert read[1:3] == ([], 3)  # no prompt replay, three digits left to read
    assert result.digits == [{"node": "b", "digits": "1234"}]


async def test_pending_digit_skips_further_interruptible_plays_but_not_a_mandatory_notice():
    f = flow({
        "a": {"type": "play", "prompts": ["p1"], "next": "b"},
        "b": {"type": "play", "prompts": ["p2"], "next": "c"},
        "c": {"type": "menu", "prompts": ["m"], "options": {"1": "z"}, "on_fail": "f"},
        "z": END, "f": {"type": "end", "outcome": "failed"},
    })
    driver = ScriptedDriver([], barge={"p1": "1"})
    result = await FlowRunner(f, driver, {}, {}).run()
    assert result.path == ["a", "b", "c", "z"]
    assert driver.played() == ["p1"]

    f.nodes["b"]["interruptible"] = False
    driver = ScriptedDriver(["1"], barge={"p1": "9"})
    result = await FlowRunner(f, driver, {}, {}).run()
    assert driver.played() == ["p1", "p2", "m"]
    assert result.digits == [{"node": "c", "digits": "1"}]


async def test_menu_with_hash_option_reads_without_terminator():
    f = flow({"a": {"type": "menu", "prompts": ["m"], "options": {"#": "z", 1: "z"}, "on_fail": "z"},
              "z": END})
    driver = ScriptedDriver(["#"])
    result = await FlowRunner(f, driver, {}, {}).run()
    assert result.path == ["a", "z"]
    assert next(e for e in driver.events if e[0] == "read")[4] == ""


async def test_menu_retries_count_re_asks_and_yaml_int_keys_match_digits():
    f = flow({"a": {"type": "menu", "prompts": ["m"], "options": {1: "z"}, "retries": 1,
                    "on_fail": "f"},
              "z": END, "f": {"type": "end", "outcome": "queued", "reason": "x"}})
    result = await FlowRunner(f, ScriptedDriver(["", "1"]), {}, {}).run()
    assert result.path == ["a", "z"]
    result = await FlowRunner(f, ScriptedDriver(["", "", "1"]), {}, {}).run()
    assert (result.path, result.reason) == (["a", "f"], "x")


async def test_branch_equals_then_and_default_and_unset_variable_is_null():
    nodes = {"a": {"type": "branch", "var": "x.y", "equals": True, "then": "t", "default": "d"},
             "t": END, "d": {"type": "end", "outcome": "failed"}}
    assert (await FlowRunner(flow(nodes), ScriptedDriver(), {}, {"x": {"y": True}}).run()).path[-1] == "t"
    assert (await FlowRunner(flow(nodes), ScriptedDriver(), {}, {"x": {"y": False}}).run()).path[-1] == "d"
    nodes["a"] = {"type": "branch", "var": "$missing", "cases": {None: "t"}, "default": "d"}
    assert (await FlowRunner(flow(nodes), ScriptedDriver(), {}, {}).run()).path[-1] == "t"


async def test_action_branch_without_matching_case_or_default_queues_with_error():
    f = flow({"a": {"type": "action", "action": "f", "branches": {"field": "k", "cases": {1: "z"}}},
              "z": END})
    result = await FlowRunner(f, ScriptedDriver(), {"f": lambda: {"k": 2}}, {}).run()
    assert (result.outcome, result.reason) == ("queued", "error")


@pytest.mark.parametrize("value, year, expected", [
    ("2025-10-08", False, [10, 8]),
    ("2025-01-31T17:30:00+08:00", False, [1, 31]),
    ("2026-02-14", True, [2026, 2, 14]),
])
async def test_say_date_speaks_month_and_day(value, year, expected):
    node = {"type": "say", "date": "$d", "next": "z"}
    if year:
        node["year"] = True
    driver = ScriptedDriver()
    await FlowRunner(flow({"a": node, "z": END}), driver, {}, {"d": value}).run()
    assert [e[1] for e in driver.events if e[0] == "say_number"] == expected
    units = [e[1][0] for e in driver.events if e[0] == "play"]
    assert units == (["date_year"] if year else []) + ["date_month", "date_day"]


async def test_say_bad_date_queues_with_error():
    f = flow({"a": {"type": "say", "date": "$d", "next": "z"}, "z": END})
    result = await FlowRunner(f, ScriptedDriver(), {}, {"d": "next week"}).run()
    assert (result.outcome, result.reason) == ("queued", "error")


async def test_set_and_reason_from_variable():
    f = flow({"a": {"type": "end", "outcome": "queued", "reason": "$why", "set": {"why": "vip"}}})
    result = await FlowRunner(f, ScriptedDriver(), {}, {}).run()
    assert (result.reason, result.variables["why"]) == ("vip", "vip")


async def test_initial_variables_are_not_mutated():
    given = {"caller": "1"}
    f = flow({"a": {"type": "end", "outcome": "self_served", "set": {"x": 1}}})
    await FlowRunner(f, ScriptedDriver(), {}, given).run()
    assert given == {"caller": "1"}


def test_load_flow_rejects_malformed_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("start: a\nnodes: [a, b]\n")
    with pytest.raises(FlowError, match="bad.yaml"):
        load_flow(bad)
    bad.write_text("nodes: {a: {type: end, outcome: queued}}\n")
    with pytest.raises(FlowError, match="start"):
        load_flow(bad)


def test_load_prompts_rejects_empty_texts(tmp_path):
    p = tmp_path / "prompts.yaml"
    p.write_text("prompts:\n  a: 你好\n  b: ''\n", encoding="utf-8")
    with pytest.raises(FlowError, match="'b'"):
        load_prompts(p)


def _failing_lookup_flow():
    def boom(caller):
        raise RuntimeError(f"no citizen with number {caller}")

    f = flow({"a": {"type": "action", "action": "boom", "args": {"caller": "$caller"}, "next": "z"},
              "z": END})
    return f, {"boom": boom}


async def test_action_error_text_masks_phone_numbers_with_the_hosts_rule(caplog):
    f, actions = _failing_lookup_flow()
    result = await FlowRunner(f, ScriptedDriver(), actions, {"caller": "13812345678"}, mask_text=mask_text).run()
    assert result.reason == "error"
    assert "138****5678" in result.error
    assert "13812345678" not in result.error + caplog.text
    assert "138****5678" in caplog.text


async def test_action_error_text_hides_every_digit_when_the_host_gives_no_rule(caplog):
    f, actions = _failing_lookup_flow()
    result = await FlowRunner(f, ScriptedDriver(), actions, {"caller": "13812345678"}).run()
    assert result.reason == "error"
    assert result.error == "a: RuntimeError: no citizen with number ***********"
    assert "13812345678" not in caplog.text and "***********" in caplog.text


# --- interruptible say nodes (issue 19 item 7: the open-case notice) ---------------------------

MENU = {"type": "menu", "prompts": ["m"], "options": {"1": "z"}, "on_fail": "z", "on_timeout": "z"}


async def test_interruptible_say_stops_at_a_key_and_the_key_counts_at_the_next_menu():
    f = flow({"a": {"type": "say", "interruptible": True, "prompts": ["due"], "date": "2025-03-14",
                    "next": "b"},
              "b": {"type": "say", "interruptible": True, "digits": "42", "next": "m"},
              "m": MENU, "z": END})
    driver = ScriptedDriver([], barge={"say_number": "1"})
    result = await FlowRunner(f, driver, {}, {}).run()
    assert result.digits == [{"node": "m", "digits": "1"}] and result.path == ["a", "b", "m", "z"]
    # the month was said, then nothing more: not its unit, not the day, not node b
    assert [e for e in driver.events if e[0] != "notify"] == [("play", ["due"], True), ("say_number", 3)]


async def test_say_is_not_interruptible_unless_marked_and_keeps_an_earlier_key():
    f = flow({"p": {"type": "play", "prompts": ["hello"], "next": "a"},
              "a": {"type": "say", "prompts": ["lead"], "number": 7, "next": "m"},
              "m": MENU, "z": END}, start="p")
    driver = ScriptedDriver([], barge={"hello": "1", "lead": "9"})
    result = await FlowRunner(f, driver, {}, {}).run()
    assert ("play", ["lead"], False) in driver.events and ("say_number", 7) in driver.events
    assert result.digits == [{"node": "m", "digits": "1"}]


async def test_check_accepts_interruptible_on_a_say_node():
    from ivr_flows.check import check_flow

    f = flow({"a": {"type": "say", "interruptible": True, "number": 1, "next": "z"}, "z": END})
    assert check_flow(f, set(), set()) == []
