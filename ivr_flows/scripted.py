"""A scripted `Driver` with no telephony: the caller's key presses are given up front.

Used by the tests and handy for trying a flow from Python. A caller who has run out of
scripted key presses hangs up (CallerHungUp) rather than waiting forever.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .engine import CallerHungUp


class ScriptedDriver:
    def __init__(
        self,
        keys: Iterable[str] = (),
        *,
        barge: Mapping[str, str] | None = None,
        recording: str | None = "recordings/message-1.wav",
        hangup_on_prompt: str | None = None,
        hangup_after_record: bool = False,
    ) -> None:
        """keys: one entry per digit read ("" = silence; a trailing terminator is cut off).
        barge: prompt name -> digit pressed while it plays (if interruptible), once; the names
        "say_number" and "say_digits" stand for the next interruptible number or digits said.
        hangup_on_prompt: the caller hangs up when this prompt starts.
        hangup_after_record: the caller hangs up right after speaking the message."""
        self.keys = list(keys)
        self.barge = dict(barge or {})
        self.recording = recording
        self.hangup_on_prompt = hangup_on_prompt
        self.hangup_after_record = hangup_after_record
        self.hung_up = False
        self.events: list[tuple[Any, ...]] = []

    def _check(self, prompts: list[str]) -> None:
        if self.hung_up or (self.hangup_on_prompt and self.hangup_on_prompt in prompts):
            self.hung_up = True
            raise CallerHungUp()

    async def play(self, prompts: list[str], interruptible: bool) -> str | None:
        self._check(prompts)
        self.events.append(("play", list(prompts), interruptible))
        if interruptible:
            for name in prompts:
                if name in self.barge:
                    return self.barge.pop(name)
        return None

    async def read_digits(self, prompts: list[str], max_digits: int, timeout_s: float,
                          terminator: str = "#") -> str:
        self._check(prompts)
        self.events.append(("read", list(prompts), max_digits, timeout_s, terminator))
        if not self.keys:
            self.hung_up = True
            raise CallerHungUp()
        digits = self.keys.pop(0)
        if terminator and terminator in digits:
            digits = digits[: digits.index(terminator)]
        return digits[:max_digits]

    async def say_number(self, n: int, interruptible: bool = False) -> str | None:
        self._check([])
        self.events.append(("say_number", n))
        return self.barge.pop("say_number", None) if interruptible else None

    async def say_digits(self, s: str, interruptible: bool = False) -> str | None:
        self._check([])
        self.events.append(("say_digits", s))
        return self.barge.pop("say_digits", None) if interruptible else None

    async def record(self, name: str, max_seconds: int) -> str | None:
        self._check([])
        self.events.append(("record", name, max_seconds))
        if self.hangup_after_record:
            self.hung_up = True
        return self.recording

    async def notify(self, event: str, **fields: Any) -> None:
        self._check([])
        self.events.append(("notify", event, fields))

    # --- views for assertions ---------------------------------------------------------------

    def played(self) -> list[str]:
        """Every prompt name played, in order (plays and read prompts)."""
        return [name for e in self.events if e[0] in ("play", "read") for name in e[1]]

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]
