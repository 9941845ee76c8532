"""Run a voice menu described as data.

The engine knows nothing about Asterisk or AGI: it talks to an abstract async
`Driver` (AGI today, maybe a SIP/WebRTC driver tomorrow) and calls named actions
from a registry the application injects.  A flow is a YAML file:

    flow: main
    inputs: [case_number]          # variables the caller side must give (optional)
    start: greeting
    entries: {waiting: ask}        # other named ways in (FlowRunner(entry=...)), optional
    nodes:
      greeting: {type: play, prompts: [welcome], next: menu}
      ...

Node types and their fields are documented on the `_run_*` methods below and in
`ivr_flows/README.md`.  Any node may carry:
  - `set: {var: literal or "$ref"}`, applied when the node is entered;
  - `hangup_outcome: <outcome>`: once this node is entered, a later hang-up ends the flow
    with that outcome instead of `abandoned` (e.g. a message already saved is
    `message_left` even if the caller hangs up before hearing its number).

Barge-in: a digit pressed during an interruptible `play` or `say` is kept as pending input
and consumed by the next `menu` or `input` node.  While a digit is pending, further
interruptible plays and says are skipped (the caller already chose to move on); a
non-interruptible play or a `record` node discards it (a notice that must be heard
changes the context: a key pressed before it answers nothing after it).
"""
from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from .values import FlowError, case_key, lookup, parse_date, prompt_list, resolve

log = logging.getLogger(__name__)

OUTCOMES = frozenset({"self_served", "queued", "message_left", "abandoned", "failed"})
NODE_TYPES = frozenset({"play", "menu", "input", "action", "branch", "say", "record", "end"})
MENU_DIGITS = frozenset("0123456789*#")
DEFAULT_MAX_STEPS = 200
DEFAULT_RETRIES = 2
DEFAULT_TIMEOUT_S = 5.0

Action = Callable[..., Awaitable[Mapping[str, Any] | None] | Mapping[str, Any] | None]


class CallerHungUp(Exception):
    """Raised by a driver from any call once the caller has hung up."""


class Driver(Protocol):
    """What the engine needs from a telephony channel. Every method may raise CallerHungUp."""

    async def play(self, prompts: list[str], interruptible: bool) -> str | None:
        """Play prompt names in order; return the digit pressed if interruptible and one was."""

    async def read_digits(
        self, prompts: list[str], max_digits: int, timeout_s: float, terminator: str = "#"
    ) -> str:
        """Play prompts (interruptible) then collect up to max_digits; "" on timeout.

        The terminator is not part of the result; terminator "" means none.
        """

    # Both return the digit pressed if interruptible and one was.
    async def say_number(self, n: int, interruptible: bool = False) -> str | None: ...

    async def say_digits(self, s: str, interruptible: bool = False) -> str | None: ...

    async def record(self, name: str, max_seconds: int) -> str | None:
        """Record the caller; return a reference/path, or None if nothing was recorded.

        If the caller hangs up after speaking, return the recording anyway (the next
        driver call raises CallerHungUp): hanging up is how many people end a message.
        """

    async def notify(self, event: str, **fields: Any) -> None:
        """Out-of-band event (AGI: AMI UserEvent). The engine sends AwaitInput(node=...)."""


@dataclass
class Flow:
    name: str
    start: str
    nodes: dict[str, dict[str, Any]]
    inputs: list[str] = field(default_factory=list)
    description: str = ""
    source: Path | None = None
    # other ways into the flow than `start`, by name: a step reused from elsewhere (e.g. the menu's
    # progress enquiry offered to a caller waiting in the queue) runs from the one definition
    entries: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str = "", source: Path | None = None) -> Flow:
        if not isinstance(data, Mapping):
            raise FlowError("a flow must be a mapping with 'start' and 'nodes'")
        nodes = data.get("nodes")
        if not isinstance(nodes, Mapping) or not nodes:
            raise FlowError("a flow needs a non-empty 'nodes' mapping")
        start = data.get("start")
        if not isinstance(start, str) or not start:
            raise FlowError("a flow needs 'start: <node id>'")
        clean: dict[str, dict[str, Any]] = {}
        for node_id, node in nodes.items():
            if not isinstance(node, Mapping):
                raise FlowError(f"node {node_id!r} must be a mapping")
            clean[str(node_id)] = dict(node)
        inputs = data.get("inputs") or []
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise FlowError("'inputs' must be a list of variable names")
        entries = data.get("entries") or {}
        if not isinstance(entries, Mapping) or not all(isinstance(v, str) and v for v in entries.values()):
            raise FlowError("'entries' must map entry names to node ids")
        return cls(
            name=str(data.get("flow") or name),
            start=start,
            nodes=clean,
            inputs=list(inputs),
            description=str(data.get("description") or ""),
            source=source,
            entries={str(k): v for k, v in entries.items()},
        )


@dataclass
class FlowResult:
    outcome: str
    reason: str | None
    path: list[str]
    digits: list[dict[str, str]]
    variables: dict[str, Any]
    error: str | None = None


def load_flow(path: str | Path) -> Flow:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FlowError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return Flow.from_dict(data, name=path.stem, source=path)
    except FlowError as exc:
        raise FlowError(f"{path}: {exc}") from exc


def load_prompts(path: str | Path) -> dict[str, str]:
    """Read prompts.yaml: `prompts: {name: Mandarin text}`."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    prompts = data.get("prompts") if isinstance(data, Mapping) else None
    if not isinstance(prompts, Mapping):
        raise FlowError(f"{path}: expected a 'prompts:' mapping")
    out: dict[str, str] = {}
    for name, text in prompts.items():
        if not isinstance(text, str) or not text.strip():
            raise FlowError(f"{path}: prompt {name!r} has no text")
        out[str(name)] = text.strip()
    return out


_DIGIT = re.compile(r"\d")


def hide_digits(text: str) -> str:
    """The engine's own masking when its host gives none: every digit hidden, so no personal
    number can reach a log or a result (the host passes the hotline's finer rule)."""
    return _DIGIT.sub("*", text)


# --- runner ---------------------------------------------------------------------------------


class _Finished(Exception):
    def __init__(self, outcome: str, reason: str | None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.reason = reason


class FlowRunner:
    """Run one call through a flow.

    `actions` maps action names to callables (sync or async) called with keyword
    arguments from the node's `args`, returning a dict (stored under `store`).
    `variables` seeds the flow variables; `caller` is the caller's number. `mask_text` hides
    personal numbers in an error's text before it is logged or returned. `entry`: one of the flow's
    `entries` to start at instead of `start`.
    """

    def __init__(
        self,
        flow: Flow,
        driver: Driver,
        actions: Mapping[str, Action],
        variables: Mapping[str, Any] | None = None,
        *,
        max_steps: int = DEFAULT_MAX_STEPS,
        mask_text: Callable[[str], str] = hide_digits,
        entry: str | None = None,
    ) -> None:
        if entry is not None and entry not in flow.entries:
            raise FlowError(f"flow {flow.name!r} has no entry {entry!r}")
        self.start = flow.entries[entry] if entry is not None else flow.start
        self.flow = flow
        self.driver = driver
        self.actions = actions
        self.mask_text = mask_text
        self.variables: dict[str, Any] = dict(variables or {})
        self.max_steps = max_steps
        self.path: list[str] = []
        self.digits: list[dict[str, str]] = []
        self._pending: str | None = None
        self._hangup_outcome = "abandoned"

    def _result(self, outcome: str, reason: str | None, error: str | None = None) -> FlowResult:
        return FlowResult(outcome, reason, list(self.path), list(self.digits), self.variables, error)

    async def run(self) -> FlowResult:
        node_id = self.start
        try:
            missing = [name for name in self.flow.inputs if name not in self.variables]
            if missing:
                raise FlowError(f"flow {self.flow.name!r} needs variables {missing}")
            while True:
                if len(self.path) >= self.max_steps:
                    log.warning("flow %s: step limit %d reached at %s", self.flow.name, self.max_steps, node_id)
                    return self._result("queued", "loop", f"more than {self.max_steps} steps")
                node = self.flow.nodes.get(node_id)
                if node is None:
                    raise FlowError(f"unknown node {node_id!r}")
                self.path.append(node_id)
                if "set" in node:
                    for name, value in (node["set"] or {}).items():
                        self.variables[str(name)] = resolve(value, self.variables)
                if node.get("hangup_outcome") in OUTCOMES:
                    self._hangup_outcome = node["hangup_outcome"]
                kind = node.get("type")
                handler = getattr(self, f"_run_{kind}", None) if kind in NODE_TYPES else None
                if handler is None:
                    raise FlowError(f"node {node_id!r}: unknown type {kind!r}")
                node_id = await handler(node_id, node)
        except _Finished as done:
            return self._result(done.outcome, done.reason)
        except CallerHungUp:
            return self._result(self._hangup_outcome, "hangup")
        except Exception as exc:  # noqa: BLE001 - the caller must never be stranded
            where = self.path[-1] if self.path else node_id
            error = f"{where}: {type(exc).__name__}: {self.mask_text(str(exc))}"
            log.error("flow %s failed, queueing the call to an operator: %s", self.flow.name, error)
            return self._result("queued", "error", error)

    # Each handler returns the next node id or raises _Finished.

    async def _run_play(self, node_id: str, node: Mapping[str, Any]) -> str:
        """`prompts`, `next`, `interruptible` (default true)."""
        interruptible = bool(node.get("interruptible", True))
        if not interruptible:
            self._pending = None
            await self.driver.play(prompt_list(node), False)
        elif self._pending is None:
            digit = await self.driver.play(prompt_list(node), True)
            if digit:
                self._pending = digit
        return node["next"]

    async def _read(self, node_id: str, prompts: list[str], max_digits: int, timeout_s: float,
                    terminator: str) -> str:
        """One digit read, using a barge-in digit first if there is one."""
        if self._pending is not None:
            first, self._pending = self._pending, None
            if terminator and first == terminator:
                # A bare terminator is an empty entry (invalid), not silence.
                self.digits.append({"node": node_id, "digits": first})
                return first
            digits = first
            if max_digits > 1:
                await self.driver.notify("AwaitInput", node=node_id)
                digits += await self.driver.read_digits([], max_digits - 1, timeout_s, terminator)
        else:
            await self.driver.notify("AwaitInput", node=node_id)
            digits = await self.driver.read_digits(prompts, max_digits, timeout_s, terminator)
        digits = digits or ""
        if terminator and digits.endswith(terminator):
            digits = digits[: -len(terminator)] or terminator
        self.digits.append({"node": node_id, "digits": digits})
        return digits

    async def _failed_attempt(self, node: Mapping[str, Any], failures: int, invalid: bool) -> bool:
        """Count a failure; True if the node should ask again (`retries` re-asks allowed)."""
        if failures > int(node.get("retries", DEFAULT_RETRIES)):
            return False
        invalid_prompts = prompt_list(node, "invalid_prompts", "invalid_prompt")
        if invalid and invalid_prompts:
            digit = await self.driver.play(invalid_prompts, True)
            if digit:
                self._pending = digit
        return True

    async def _run_menu(self, node_id: str, node: Mapping[str, Any]) -> str:
        """`prompts`, `options: {digit: next}`, `timeout_s`, `on_timeout`, `retries`
        (re-asks after an invalid key or silence; then `on_fail`), `invalid_prompt`, `on_fail`."""
        options = {case_key(k): v for k, v in node["options"].items()}
        timeout_s = float(node.get("timeout_s", DEFAULT_TIMEOUT_S))
        # '#' as a menu choice must not be swallowed as a terminator.
        terminator = "" if "#" in options else "#"
        prompts = prompt_list(node)
        failures = 0
        while True:
            digits = await self._read(node_id, prompts, 1, timeout_s, terminator)
            if digits in options:
                return options[digits]
            if digits == "" and node.get("on_timeout"):
                return node["on_timeout"]
            failures += 1
            if not await self._failed_attempt(node, failures, invalid=digits != ""):
                return node["on_fail"]

    async def _run_input(self, node_id: str, node: Mapping[str, Any]) -> str:
        """`prompts`, `max_digits`, `min_digits` (default 1), `terminator` (default "#"),
        `timeout_s`, `store`, `next`, `retries`, `invalid_prompt`, `on_fail`, optional `on_timeout`."""
        max_digits = int(node["max_digits"])
        min_digits = int(node.get("min_digits", 1))
        terminator = str(node.get("terminator", "#"))
        timeout_s = float(node.get("timeout_s", DEFAULT_TIMEOUT_S))
        prompts = prompt_list(node)
        failures = 0
        while True:
            digits = await self._read(node_id, prompts, max_digits, timeout_s, terminator)
            if digits and digits.isdigit() and min_digits <= len(digits) <= max_digits:
                self.variables[node["store"]] = digits
                return node["next"]
            if digits == "" and node.get("on_timeout"):
                return node["on_timeout"]
            failures += 1
            if not await self._failed_attempt(node, failures, invalid=digits != ""):
                return node["on_fail"]

    async def _run_action(self, node_id: str, node: Mapping[str, Any]) -> str:
        """`action`, `args`, `store`, then `next` or `branches: {field, cases, default}`."""
        name = node["action"]
        func = self.actions.get(name)
        if func is None:
            raise FlowError(f"action {name!r} is not registered")
        args = resolve(dict(node.get("args") or {}), self.variables)
        result = func(**args)
        if inspect.isawaitable(result):
            result = await result
        result = dict(result or {})
        if node.get("store"):
            self.variables[node["store"]] = result
        branches = node.get("branches")
        if branches:
            return self._choose(node_id, result.get(branches["field"]), branches["cases"], branches.get("default"))
        return node["next"]

    def _choose(self, node_id: str, value: Any, cases: Mapping[Any, str], default: str | None) -> str:
        table = {case_key(k): v for k, v in (cases or {}).items()}
        target = table.get(case_key(value), default)
        if target is None:
            raise FlowError(f"node {node_id!r}: no case for value {value!r} and no default")
        return target

    async def _run_branch(self, node_id: str, node: Mapping[str, Any]) -> str:
        """`var`, then `cases: {value: next}` or `equals: value` + `then: next`; `default`.
        A variable that is not set compares as null."""
        value = lookup(self.variables, str(node["var"]), None)
        if "equals" in node:
            if case_key(value) == case_key(node["equals"]):
                return node["then"]
            return self._choose(node_id, value, {}, node.get("default"))
        return self._choose(node_id, value, node.get("cases") or {}, node.get("default"))

    async def _run_say(self, node_id: str, node: Mapping[str, Any]) -> str:
        """Optional lead-in `prompts`, then one of `number`, `digits`, `date` (+ `year: true`),
        `prompt_from` (a prompt name held in a variable); then `next`. `interruptible` (default
        false): as in `play`, a key pressed ends the node and counts at the next menu or input, and
        the node is skipped while a key is pending."""
        interruptible = bool(node.get("interruptible", False))
        if interruptible and self._pending is not None:
            return node["next"]
        for say_part in self._say_parts(node_id, node):
            if (digit := await say_part(interruptible)) and interruptible:
                self._pending = digit
                break
        return node["next"]

    def _say_parts(self, node_id: str, node: Mapping[str, Any]) -> list[Callable[[bool], Awaitable[str | None]]]:
        """What a say node plays, in order, each part taking `interruptible`; values resolved first
        so a bad one fails before the caller hears half of it."""
        driver, lead = self.driver, prompt_list(node)
        parts: list[Callable[[bool], Awaitable[str | None]]] = [lambda i: driver.play(lead, i)] if lead else []
        if "number" in node:
            n = int(resolve(node["number"], self.variables))
            parts.append(lambda i: driver.say_number(n, i))
        elif "digits" in node:
            text = "".join(ch for ch in str(resolve(node["digits"], self.variables)) if ch.isdigit())
            parts.append(lambda i: driver.say_digits(text, i))
        elif "date" in node:
            day = parse_date(resolve(node["date"], self.variables))
            year = [(day.year, "date_year")] if node.get("year") else []
            for number, unit in [*year, (day.month, "date_month"), (day.day, "date_day")]:
                parts.append(lambda i, number=number: driver.say_number(number, i))
                parts.append(lambda i, unit=unit: driver.play([unit], i))
        elif "prompt_from" in node:
            name = resolve(node["prompt_from"], self.variables)
            if not name:
                raise FlowError(f"node {node_id!r}: prompt_from is empty")
            parts.append(lambda i: driver.play([str(name)], i))
        else:
            raise FlowError(f"node {node_id!r}: say needs number, digits, date or prompt_from")
        return parts

    async def _run_record(self, node_id: str, node: Mapping[str, Any]) -> str:
        """`prompts`, `max_seconds`, `store`, `next`, optional `on_empty` (nothing recorded)."""
        self._pending = None
        prompts = prompt_list(node)
        if prompts:
            await self.driver.play(prompts, False)
        ref = await self.driver.record(str(node.get("name") or node_id), int(node["max_seconds"]))
        self.variables[node["store"]] = ref
        if not ref and node.get("on_empty"):
            return node["on_empty"]
        return node["next"]

    async def _run_end(self, node_id: str, node: Mapping[str, Any]) -> str:
        """`outcome` (self_served|queued|message_left|abandoned|failed), `reason` (queued only,
        literal or $var), optional `prompts` played before the call leaves the flow."""
        outcome = node.get("outcome")
        if outcome not in OUTCOMES:
            raise FlowError(f"node {node_id!r}: unknown outcome {outcome!r}")
        reason = node.get("reason")
        if reason is not None:
            reason = str(resolve(reason, self.variables))
        prompts = prompt_list(node)
        if prompts:
            await self.driver.play(prompts, False)
        raise _Finished(outcome, reason)
