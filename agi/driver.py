"""The flow engine's Driver over one AGI channel: prompts, digits, numbers, recordings, events."""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from ivr_flows.engine import CallerHungUp

from .channel import AGIChannel, AGIHangup

log = logging.getLogger("agi.driver")

ALL_DIGITS = "0123456789*#"
PROMPT_DIR = "hotline"  # sounds/zh/hotline/NAME.wav, rendered at install
# A prompt directory is one plain path component under sounds/<lang>/: nothing that could climb
# out of it ("..", "/") or reach Asterisk's other sound files by an odd name.
_PROMPT_DIR_NAME = re.compile(r"[a-z0-9-]+")


def prompt_dir_for(query: Mapping[str, str]) -> str:
    """The prompt directory a call asks for in its AGI URL (``agi://.../ivr/main?prompts=bench-silent``),
    else the hotline's own. An invalid name is ignored (logged): the caller still hears the menu."""
    wanted = query.get("prompts")
    if not wanted:
        return PROMPT_DIR
    if not _PROMPT_DIR_NAME.fullmatch(wanted):
        log.warning("ignoring invalid prompts=%r in the AGI URL; using %s/", wanted[:40], PROMPT_DIR)
        return PROMPT_DIR
    return wanted


class AGIDriver:
    def __init__(self, channel: AGIChannel, *, recordings_dir: str, uniqueid: str, prompt_dir: str = PROMPT_DIR):
        if not _PROMPT_DIR_NAME.fullmatch(prompt_dir):
            raise ValueError(f"prompt directory must match [a-z0-9-]+: {prompt_dir!r}")
        self.channel = channel
        self.recordings_dir = recordings_dir.rstrip("/")
        self.uniqueid = uniqueid
        self.prompt_dir = prompt_dir  # e.g. "bench-silent": the same menu with silent prompts
        self.recorded: list[str] = []

    prompt_dir_for = staticmethod(prompt_dir_for)  # so callers need only the class

    async def _guard(self, coro):
        try:
            return await coro
        except AGIHangup as exc:
            raise CallerHungUp() from exc

    async def play(self, prompts: list[str], interruptible: bool) -> str | None:
        escape = ALL_DIGITS if interruptible else ""
        for name in prompts:
            digit = await self._guard(self.channel.stream_file(f"{self.prompt_dir}/{name}", escape))
            if digit:
                return digit
        return None

    async def read_digits(self, prompts: list[str], max_digits: int, timeout_s: float, terminator: str = "#") -> str:
        # Earlier prompts are interruptible plays; the last one is GET DATA, which keeps collecting.
        first = None
        for name in prompts[:-1]:
            first = await self._guard(self.channel.stream_file(f"{self.prompt_dir}/{name}", ALL_DIGITS))
            if first:
                break
        timeout_ms = max(int(timeout_s * 1000), 500)
        if first is not None:
            if terminator and first == terminator:
                return ""
            if max_digits <= 1:
                return first
            rest, _timed_out = await self._guard(
                self.channel.get_data(f"{self.prompt_dir}/short-silence", timeout_ms, max_digits - 1))
            return first + rest
        last = f"{self.prompt_dir}/{prompts[-1]}" if prompts else f"{self.prompt_dir}/short-silence"
        digits, _timed_out = await self._guard(self.channel.get_data(last, timeout_ms, max_digits))
        return digits

    async def say_number(self, n: int) -> None:
        await self._guard(self.channel.say_number(n))

    async def say_digits(self, s: str) -> None:
        await self._guard(self.channel.say_digits(s))

    async def record(self, name: str, max_seconds: int) -> str | None:
        path = f"{self.recordings_dir}/{name}-{self.uniqueid.replace('.', '-').replace(';', '-')}"
        await self.notify("Recording", recording=name)  # lets a simulated caller know when to speak
        result = await self._guard(self.channel.record_file(path, "wav", "#", max_seconds * 1000, True, 5))
        if result.endpos <= 0:
            return None
        self.recorded.append(path + ".wav")
        return path + ".wav"

    async def notify(self, event: str, **fields) -> None:
        # The UserEvent carries the channel's Uniqueid and Linkedid itself.
        await self._guard(self.channel.user_event(f"Callcenter{event}", **fields))
