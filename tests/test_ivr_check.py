"""The flow checker, the shipped flows and prompt texts, and `callcenter ivr check/show`."""
from __future__ import annotations

import re

import pytest
import yaml
from click.testing import CliRunner

from callcenter.ivr_cli import ivr_group
from ivr_flows import PROMPTS_PATH, flow_files, flow_path
from ivr_flows.actions import KNOWN_ACTIONS, status_prompt_name
from ivr_flows.check import check_flow
from ivr_flows.engine import Flow, load_flow, load_prompts
from ticketing.enums import CaseStatus

ACTIONS = {"lookup"}
PROMPTS = {"hello", "bye", "menu", "date_month", "date_day"}


def problems_of(nodes: dict, start: str = "a", **extra) -> set[tuple[str | None, str]]:
    flow = Flow.from_dict({"start": start, "nodes": nodes, **extra})
    return {(p.node, p.kind) for p in check_flow(flow, ACTIONS, PROMPTS)}


END = {"type": "end", "outcome": "self_served"}


def test_clean_small_flow_has_no_problems():
    assert problems_of({
        "a": {"type": "play", "prompts": ["hello"], "next": "m"},
        "m": {"type": "menu", "prompt": "menu", "options": {1: "l", "#": "z"}, "on_fail": "z"},
        "l": {"type": "action", "action": "lookup", "args": {"who": "$caller"}, "store": "r",
              "branches": {"field": "ok", "cases": {True: "d"}, "default": "z"}},
        "d": {"type": "say", "date": "$r.when", "next": "z"},
        "z": END,
    }) == set()


@pytest.mark.parametrize("nodes, expected", [
    ({"a": {"type": "play", "prompts": ["hello"], "next": "nowhere"}}, ("a", "unknown_node")),
    ({"a": {"type": "play", "prompts": ["hello"], "next": "z"}, "z": END, "lost": END},
     ("lost", "unreachable")),
    ({"a": {"type": "play", "prompts": ["hello"], "next": "b"},
      "b": {"type": "menu", "prompts": ["menu"], "options": {1: "a"}, "on_fail": "b"},
      "z": END},
     ("b", "no_exit")),
    ({"a": {"type": "play", "prompts": ["hello", "not_recorded"], "next": "z"}, "z": END},
     ("a", "missing_prompt")),
    ({"a": {"type": "say", "date": "$caller", "next": "z"}, "z": END},
     None),  # date prompts exist: control case
    ({"a": {"type": "action", "action": "launch_rocket", "next": "z"}, "z": END},
     ("a", "unknown_action")),
    ({"a": {"type": "dial", "next": "z"}, "z": END}, ("a", "unknown_type")),
    ({"a": {"type": "menu", "prompts": ["menu"], "options": {"A": "z", 12: "z"}, "on_fail": "z"},
      "z": END}, ("a", "bad_digit")),
    ({"a": {"type": "input", "prompts": ["menu"], "store": "n", "next": "z", "on_fail": "z"},
      "z": END}, ("a", "missing_field")),
    ({"a": {"type": "menu", "prompts": ["menu"], "options": {1: "z"}}, "z": END},
     ("a", "missing_field")),
    ({"a": {"type": "play", "prompts": ["hello"], "nxet": "z", "next": "z"}, "z": END},
     ("a", "unknown_field")),
    ({"a": {"type": "end", "outcome": "transferred"}}, ("a", "bad_value")),
    ({"a": {"type": "say", "digits": "$case_no", "next": "z"}, "z": END}, ("a", "undefined_variable")),
])
def test_each_problem_kind_is_found_and_names_its_node(nodes, expected):
    found = problems_of(nodes)
    if expected is None:
        assert found == set()
    else:
        assert expected in found, found


def test_no_exit_names_every_node_of_the_closed_loop_only():
    found = problems_of({
        "a": {"type": "menu", "prompts": ["menu"], "options": {1: "b", 2: "z"}, "on_fail": "z"},
        "b": {"type": "play", "prompts": ["hello"], "next": "c"},
        "c": {"type": "play", "prompts": ["bye"], "next": "b"},
        "z": END,
    })
    assert {n for n, k in found if k == "no_exit"} == {"b", "c"}


def test_missing_start_node_is_a_flow_problem():
    assert (None, "unknown_node") in problems_of({"z": END}, start="a")


def test_declared_inputs_count_as_defined_variables():
    nodes = {"a": {"type": "say", "digits": "$case_number", "next": "z"}, "z": END}
    assert problems_of(nodes, inputs=["case_number"]) == set()


def test_problem_text_names_node_and_kind():
    flow = Flow.from_dict({"start": "a", "nodes": {"a": {"type": "play", "prompts": ["x"], "next": "z"},
                                                   "z": END}})
    [problem] = check_flow(flow, ACTIONS, PROMPTS)
    assert str(problem) == "a: missing_prompt: prompt 'x' is not in prompts.yaml"


# --- the shipped flows and prompts ---------------------------------------------------------

@pytest.fixture(scope="module")
def prompts() -> dict[str, str]:
    return load_prompts(PROMPTS_PATH)


@pytest.mark.parametrize("name", ["main", "survey", "notify"])
def test_shipped_flows_pass_the_checker(name, prompts):
    flow = load_flow(flow_path(name))
    assert [str(p) for p in check_flow(flow, set(KNOWN_ACTIONS), set(prompts))] == []


def test_flow_files_are_main_and_survey_not_prompts():
    assert {p.name for p in flow_files()} >= {"main.yaml", "survey.yaml", "notify.yaml"}
    assert "prompts.yaml" not in {p.name for p in flow_files()}


def test_every_case_status_has_a_spoken_prompt(prompts):
    for status in CaseStatus:
        assert status_prompt_name(status.value, set(prompts)) == f"status_{status.value}"
    assert status_prompt_name("no_such_status", set(prompts)) == "status_unknown"
    assert prompts["status_new"].startswith("已受理")
    assert prompts["status_closed"].startswith("已办结")
    assert (prompts["date_month"], prompts["date_day"]) == ("月", "日")


def test_prompts_are_mandarin_and_numbers_are_written_as_chinese_digits(prompts):
    # espeak-ng reads "110" as 一百一十: service numbers must be written 幺幺零.
    for name, text in prompts.items():
        assert re.search(r"[\u4e00-\u9fff]", text), name
        assert not re.search(r"\d{2,}", text), (name, text)
    assert "幺二三四五" in prompts["welcome"]
    assert all(n in prompts["emergency_notice"] for n in ("幺幺零", "幺幺九", "幺二零"))


def test_every_prompt_lives_in_prompts_yaml_only():
    # Flows reference prompts by name; no Mandarin text hides in a flow file.
    for path in flow_files():
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
        for node in body["nodes"].values():
            for key in ("prompt", "prompts", "invalid_prompt"):
                values = node.get(key) or []
                for value in [values] if isinstance(values, str) else values:
                    assert re.fullmatch(r"[a-z0-9_]+", value), (path.name, value)


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_check_default_flows_pass():
    result = CliRunner().invoke(ivr_group, ["check"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "4 flow(s) checked, 0 problem(s)" in result.output


def test_cli_check_reports_file_and_node_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"start": "a", "nodes": {
        "a": {"type": "action", "action": "launch_rocket", "next": "b"},
        "b": {"type": "play", "prompts": ["welcome"], "next": "a"}}}))
    result = CliRunner().invoke(ivr_group, ["check", str(bad), str(flow_path("main"))])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert f"{bad}: a: unknown_action: unknown action 'launch_rocket'" in lines
    assert any(line.startswith(f"{bad}: b: no_exit") for line in lines)
    assert not any("main.yaml" in line for line in lines)


def test_cli_check_reports_unloadable_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("start: [\n")
    result = CliRunner().invoke(ivr_group, ["check", str(bad)])
    assert result.exit_code == 1
    assert "load_error" in result.stdout


def test_cli_show_prints_an_indented_tree():
    result = CliRunner().invoke(ivr_group, ["show", "main"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == "  greeting: play [welcome, emergency_notice]"
    menu = next(line for line in lines if "-> main_menu: menu" in line)
    option = next(line for line in lines if "key 1 -> create_consultation" in line)
    indent = len(menu) - len(menu.lstrip())
    assert len(option) - len(option.lstrip()) == indent + 2
    assert "unreachable" not in result.stdout
