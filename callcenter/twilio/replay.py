"""The flow engine's Driver for a carrier that calls back statelessly (Twilio webhooks).

The engine (ivr_flows/engine.py) runs a call from start to end against a Driver that blocks for each
key press. A webhook cannot block: each one answers with the next TwiML and the next webhook may reach
another process. So each webhook runs the flow again from its start with a `ReplayDriver` fed the
call's journal -- every answer taken so far (digits, recordings) and every action's result -- and the
flow, being deterministic given those, walks the same path. Actions are not run again on replay
(their recorded result is returned), so a case is created once. When the flow asks for an answer the
journal does not have yet, the driver stops the run (`Suspended`) with the verbs to send: the plays
since the last answer and the <Gather>/<Record> that will bring the next one.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr_flows.engine import CallerHungUp
from ivr_flows.values import FlowError


@dataclass
class Verb:
    """One thing to send the caller: kind play | say_number | say_digits, or the input that ends a
    webhook's answer: gather | record."""

    kind: str
    value: Any = None
    interruptible: bool = False
    options: dict[str, Any] = field(default_factory=dict)


class Suspended(BaseException):
    """The flow waits for an answer the journal does not hold yet. A BaseException on purpose: the
    engine turns any Exception into "queue the caller", and this is no failure -- it must pass it by
    unchanged (the engine stays as it is)."""

    def __init__(self, verbs: list[Verb]):
        super().__init__("suspended")
        self.verbs = verbs


class ReplayDriver:
    """Feeds the journal's answers to the engine; `hung_up`: the caller is gone, so the flow ends at
    the input it was waiting for (where the caller was when the carrier said the call ended)."""

    def __init__(self, journal: list[dict[str, Any]], *, hung_up: bool = False):
        self.journal = journal
        self.position = 0
        self.hung_up = hung_up
        self._hangup_next = False  # the caller hung up after a recording: the next call raises
        self.pending: list[Verb] = []  # verbs since the last answer taken
        self.appended: list[dict[str, Any]] = []  # entries added by live actions in this run
        self.recordings: list[str] = []

    # ---- the journal ---------------------------------------------------------------------------
    def _next(self, kind: str) -> dict[str, Any] | None:
        if self.position >= len(self.journal):
            return None
        entry = self.journal[self.position]
        if entry.get("kind") != kind:
            raise FlowError(f"journal entry {self.position} is {entry.get('kind')!r}, the flow asks for {kind!r}")
        self.position += 1
        if kind != "action":
            self.pending = []  # sent before this answer came: not again
        return entry

    def wrap_actions(self, actions: Mapping[str, Callable], on_live: Callable[[], Any] | None = None) -> dict:
        """Each action answered from the journal on replay; run for real (and journaled) the first time.
        `on_live()` runs after a live action, so its result is saved before anything else can fail."""
        def wrapped(name: str, func: Callable) -> Callable:
            async def call(**kwargs: Any) -> Any:
                entry = self._next("action")
                if entry is not None:
                    if entry.get("name") != name:
                        raise FlowError(f"journal has action {entry.get('name')!r}, the flow calls {name!r}")
                    return entry.get("result")
                result = func(**kwargs)
                if inspect.isawaitable(result):
                    result = await result
                entry = {"kind": "action", "name": name, "result": _jsonable(dict(result or {}))}
                self.journal.append(entry)
                self.appended.append(entry)
                self.position += 1
                if on_live is not None:
                    saved = on_live()
                    if inspect.isawaitable(saved):
                        await saved
                return entry["result"]
            return call
        return {name: wrapped(name, func) for name, func in actions.items()}

    def _check(self) -> None:
        if self._hangup_next:
            raise CallerHungUp()

    def _waiting(self) -> bool:
        """At an input with no answer journaled: the caller hung up here, or the run stops here."""
        if self.hung_up:
            raise CallerHungUp()
        return True

    # ---- the Driver protocol ----------------------------------------------------------------
    async def play(self, prompts: list[str], interruptible: bool) -> str | None:
        self._check()
        if prompts:
            self.pending.append(Verb("play", list(prompts), interruptible))
        return None  # a key pressed while it plays reaches the next <Gather>, which holds it

    async def read_digits(self, prompts: list[str], max_digits: int, timeout_s: float, terminator: str = "#") -> str:
        self._check()
        entry = self._next("digits")
        if entry is not None:
            return str(entry.get("digits") or "")
        self._waiting()
        gather = Verb("gather", list(prompts), True, {"max_digits": max_digits, "timeout_s": timeout_s,
                                                      "terminator": terminator})
        raise Suspended([*self.pending, gather])

    async def say_number(self, n: int, interruptible: bool = False) -> str | None:
        self._check()
        self.pending.append(Verb("say_number", int(n), interruptible))
        return None

    async def say_digits(self, s: str, interruptible: bool = False) -> str | None:
        self._check()
        self.pending.append(Verb("say_digits", str(s), interruptible))
        return None

    async def record(self, name: str, max_seconds: int) -> str | None:
        self._check()
        entry = self._next("record")
        if entry is not None:
            # Hanging up is how many people end a message: keep it, end the call at the next step.
            self._hangup_next = bool(entry.get("hung_up"))
            if entry.get("recording"):
                self.recordings.append(entry["recording"])
            return entry.get("recording") or None
        self._waiting()
        raise Suspended([*self.pending, Verb("record", name, False, {"max_seconds": max_seconds})])

    async def notify(self, event: str, **fields: Any) -> None:
        return None  # AMI user events mean nothing on a carrier's line


def _jsonable(value: Any) -> Any:
    """Action results go to a JSON column: dates as ISO text, as a flow reads them anyway."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
