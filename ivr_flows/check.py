"""Static checks of a flow before it goes live: every problem is named with its node id."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .engine import MENU_DIGITS, NODE_TYPES, OUTCOMES, Flow
from .values import case_key, prompt_list

# Problem kinds (stable strings: tests and tooling match on them).
UNKNOWN_NODE = "unknown_node"
UNREACHABLE = "unreachable"
NO_EXIT = "no_exit"
MISSING_PROMPT = "missing_prompt"
UNKNOWN_ACTION = "unknown_action"
UNKNOWN_TYPE = "unknown_type"
BAD_DIGIT = "bad_digit"
MISSING_FIELD = "missing_field"
UNKNOWN_FIELD = "unknown_field"
BAD_VALUE = "bad_value"
UNDEFINED_VARIABLE = "undefined_variable"

BUILTIN_VARIABLES = frozenset({"caller"})

_COMMON = {"type", "set", "hangup_outcome", "description", "comment"}
_PROMPTS = {"prompt", "prompts"}
_INVALID = {"invalid_prompt", "invalid_prompts"}
# type -> (required fields, optional fields); "prompts" stands for prompt|prompts.
_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "play": ({"prompts", "next"}, {"interruptible"}),
    "menu": ({"prompts", "options", "on_fail"}, {"timeout_s", "on_timeout", "retries"} | _INVALID),
    "input": (
        {"prompts", "max_digits", "store", "next", "on_fail"},
        {"min_digits", "terminator", "timeout_s", "retries", "on_timeout"} | _INVALID,
    ),
    "action": ({"action"}, {"args", "store", "next", "branches"}),
    "branch": ({"var", "default"}, {"cases", "equals", "then"}),
    "say": ({"next"}, {"prompts", "number", "digits", "date", "year", "prompt_from", "interruptible"}),
    "record": ({"max_seconds", "store", "next"}, {"prompts", "name", "on_empty"}),
    "end": ({"outcome"}, {"reason", "prompts"}),
}
_SAY_KINDS = ("number", "digits", "date", "prompt_from")


@dataclass(frozen=True)
class Problem:
    node: str | None
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.node or '<flow>'}: {self.kind}: {self.message}"


def _label(value: Any) -> str:
    return case_key(value) or '""'


def successors(node: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(label, target) edges out of a node, in a stable, readable order."""
    kind = node.get("type")
    edges: list[tuple[str, Any]] = []

    def add(label: str, key: str) -> None:
        if node.get(key) is not None:
            edges.append((label, node[key]))

    if kind == "menu":
        options = node.get("options")
        if isinstance(options, Mapping):
            edges += [(f"key {_label(k)}", v) for k, v in options.items()]
        add("timeout", "on_timeout")
        add("fail", "on_fail")
    elif kind == "input":
        add("ok", "next")
        add("timeout", "on_timeout")
        add("fail", "on_fail")
    elif kind == "action":
        add("next", "next")
        branches = node.get("branches")
        if isinstance(branches, Mapping):
            cases = branches.get("cases")
            if isinstance(cases, Mapping):
                field_name = branches.get("field")
                edges += [(f"{field_name}={_label(k)}", v) for k, v in cases.items()]
            if branches.get("default") is not None:
                edges.append(("default", branches["default"]))
    elif kind == "branch":
        cases = node.get("cases")
        if isinstance(cases, Mapping):
            edges += [(f"{node.get('var')}={_label(k)}", v) for k, v in cases.items()]
        if "equals" in node:
            add(f"{node.get('var')}={_label(node.get('equals'))}", "then")
        add("default", "default")
    elif kind == "record":
        add("next", "next")
        add("empty", "on_empty")
    elif kind != "end":
        add("next", "next")
    return edges


def _refs(value: Any) -> Iterable[str]:
    """Root variable names referenced as "$name..." inside a value."""
    if isinstance(value, str):
        if value.startswith("$") and not value.startswith("$$") and len(value) > 1:
            yield value[1:].split(".")[0]
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def _node_prompts(node: Mapping[str, Any]) -> list[str]:
    names = prompt_list(node) + prompt_list(node, "invalid_prompts", "invalid_prompt")
    if node.get("type") == "say" and "date" in node:
        names += ["date_month", "date_day"] + (["date_year"] if node.get("year") else [])
    return names


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _check_node(node_id: str, node: Mapping[str, Any], known_actions: set[str]) -> list[Problem]:
    out: list[Problem] = []
    kind = node.get("type")
    if kind not in NODE_TYPES:
        return [Problem(node_id, UNKNOWN_TYPE, f"unknown node type {kind!r}")]
    required, optional = _FIELDS[kind]
    present = set(node)
    if present & _PROMPTS:
        present = (present - _PROMPTS) | {"prompts"}
    if present & _INVALID:
        present = (present - _INVALID) | {"invalid_prompt"}
    for name in sorted(required - present):
        out.append(Problem(node_id, MISSING_FIELD, f"{kind} node needs '{name}'"))
    allowed = required | optional | _COMMON | {"invalid_prompt"}
    for name in sorted(present - allowed):
        out.append(Problem(node_id, UNKNOWN_FIELD, f"{kind} node has no field '{name}'"))
    if "set" in node and not isinstance(node["set"], Mapping):
        out.append(Problem(node_id, BAD_VALUE, "'set' must be a mapping"))
    if "hangup_outcome" in node and node["hangup_outcome"] not in OUTCOMES:
        out.append(Problem(node_id, BAD_VALUE, f"hangup_outcome {node['hangup_outcome']!r} is not an outcome"))

    if kind == "menu":
        options = node.get("options")
        if "options" in node and (not isinstance(options, Mapping) or not options):
            out.append(Problem(node_id, BAD_VALUE, "'options' must be a non-empty mapping {digit: node}"))
        elif isinstance(options, Mapping):
            for key in options:
                digit = case_key(key)
                if len(digit) != 1 or digit not in MENU_DIGITS:
                    out.append(Problem(node_id, BAD_DIGIT, f"menu key {digit!r} is not one of 0-9 * #"))
    if kind in ("menu", "input"):
        if "timeout_s" in node and not _is_number(node["timeout_s"]):
            out.append(Problem(node_id, BAD_VALUE, "'timeout_s' must be a positive number"))
        if "retries" in node and not _is_int(node["retries"], 0):
            out.append(Problem(node_id, BAD_VALUE, "'retries' must be an integer >= 0"))
    if kind == "input":
        max_digits = node.get("max_digits")
        if "max_digits" in node and not _is_int(max_digits, 1):
            out.append(Problem(node_id, BAD_VALUE, "'max_digits' must be an integer >= 1"))
        min_digits = node.get("min_digits", 1)
        if not _is_int(min_digits, 1) or (_is_int(max_digits, 1) and min_digits > max_digits):
            out.append(Problem(node_id, BAD_VALUE, "'min_digits' must be between 1 and max_digits"))
        terminator = node.get("terminator", "#")
        if not isinstance(terminator, str) or terminator not in ("", "#", "*"):
            out.append(Problem(node_id, BAD_VALUE, "'terminator' must be '#', '*' or ''"))
    if kind == "action":
        name = node.get("action")
        if "action" in node and name not in known_actions:
            out.append(Problem(node_id, UNKNOWN_ACTION, f"unknown action {name!r}"))
        has_next, branches = "next" in node, node.get("branches")
        if has_next == ("branches" in node):
            out.append(Problem(node_id, MISSING_FIELD, "action node needs exactly one of 'next' or 'branches'"))
        if branches is not None:
            if not isinstance(branches, Mapping):
                out.append(Problem(node_id, BAD_VALUE, "'branches' must be {field, cases, default}"))
            else:
                for name in ("field", "cases", "default"):
                    if name not in branches:
                        out.append(Problem(node_id, MISSING_FIELD, f"'branches' needs '{name}'"))
                if "cases" in branches and not isinstance(branches["cases"], Mapping):
                    out.append(Problem(node_id, BAD_VALUE, "'branches.cases' must be a mapping"))
        if "args" in node and not isinstance(node["args"], Mapping):
            out.append(Problem(node_id, BAD_VALUE, "'args' must be a mapping"))
    if kind == "branch":
        if "equals" in node:
            if "then" not in node:
                out.append(Problem(node_id, MISSING_FIELD, "branch with 'equals' needs 'then'"))
        elif not isinstance(node.get("cases"), Mapping):
            out.append(Problem(node_id, MISSING_FIELD, "branch node needs 'cases' or 'equals' + 'then'"))
    if kind == "say":
        given = [k for k in _SAY_KINDS if k in node]
        if len(given) != 1:
            out.append(Problem(node_id, MISSING_FIELD, "say node needs exactly one of number, digits, date, prompt_from"))
    if kind == "record" and "max_seconds" in node and not _is_int(node["max_seconds"], 1):
        out.append(Problem(node_id, BAD_VALUE, "'max_seconds' must be an integer >= 1"))
    if kind == "end":
        if "outcome" in node and node["outcome"] not in OUTCOMES:
            out.append(Problem(node_id, BAD_VALUE, f"outcome {node['outcome']!r} is not one of {sorted(OUTCOMES)}"))
        if "reason" in node and node.get("outcome") != "queued":
            out.append(Problem(node_id, BAD_VALUE, "'reason' is only for outcome queued"))
    return out


def check_flow(flow: Flow, known_actions: set[str], prompts: set[str]) -> list[Problem]:
    """All problems found in `flow`, each naming its node (None for flow-level problems)."""
    problems: list[Problem] = []
    nodes = flow.nodes

    defined = set(BUILTIN_VARIABLES) | set(flow.inputs)
    for node in nodes.values():
        if isinstance(node.get("store"), str):
            defined.add(node["store"])
        if isinstance(node.get("set"), Mapping):
            defined.update(str(k) for k in node["set"])

    edges: dict[str, list[str]] = {}
    for node_id, node in nodes.items():
        problems += _check_node(node_id, node, known_actions)
        for name in _node_prompts(node):
            if name not in prompts:
                problems.append(Problem(node_id, MISSING_PROMPT, f"prompt {name!r} is not in prompts.yaml"))
        targets = []
        for label, target in successors(node):
            if not isinstance(target, str) or target not in nodes:
                problems.append(Problem(node_id, UNKNOWN_NODE, f"{label} -> unknown node {target!r}"))
            else:
                targets.append(target)
        edges[node_id] = targets
        used = list(_refs(node.get("args"))) + list(_refs(node.get("set")))
        used += list(_refs([node.get(k) for k in (*_SAY_KINDS, "reason")]))
        if node.get("type") == "branch" and isinstance(node.get("var"), str):
            used.append(node["var"].lstrip("$").split(".")[0])
        for name in dict.fromkeys(used):
            if name not in defined:
                problems.append(Problem(node_id, UNDEFINED_VARIABLE, f"${name} is never set in this flow"))

    if flow.start not in nodes:
        problems.append(Problem(None, UNKNOWN_NODE, f"start node {flow.start!r} does not exist"))
        return problems
    roots = [flow.start]
    for name, target in flow.entries.items():
        if target in nodes:
            roots.append(target)
        else:
            problems.append(Problem(None, UNKNOWN_NODE, f"entry {name!r} -> unknown node {target!r}"))

    reachable: set[str] = set()
    stack = list(roots)
    while stack:
        current = stack.pop()
        if current in reachable:
            continue
        reachable.add(current)
        stack.extend(edges[current])
    for node_id in nodes:
        if node_id not in reachable:
            problems.append(Problem(node_id, UNREACHABLE, f"not reachable from start {flow.start!r}"
                                                             + (" or an entry" if flow.entries else "")))

    # Nodes that can reach an end node, by walking edges backwards from every end.
    reverse: dict[str, list[str]] = {n: [] for n in nodes}
    for source, targets in edges.items():
        for target in targets:
            reverse[target].append(source)
    can_finish: set[str] = set()
    stack = [n for n, node in nodes.items() if node.get("type") == "end"]
    while stack:
        current = stack.pop()
        if current in can_finish:
            continue
        can_finish.add(current)
        stack.extend(reverse[current])
    for node_id in nodes:
        if node_id in reachable and node_id not in can_finish:
            problems.append(Problem(node_id, NO_EXIT, "no end node can be reached from here (loop without exit)"))
    return problems
