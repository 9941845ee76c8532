"""The flow engine's Driver over one AGI channel: prompts, digits, numbers, recordings, events."""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from ivr_flows.engine import CallerHungUp

from .channel import AGIChannel, AGIError, AGIHangup

log = logging.getLogger("agi.driver")

ALL_DIGITS = "0123456789*#"
# The key that ends every command the menu runs while Asterisk does not watch the AGI socket: Read()'s
# terminator, the recording's escape key, and the one key a say callers cannot skip still stops on.
# The watchdog (callcenter/agi_watchdog.py) sends it to the callers of a menu server that died, who
# would otherwise hear the command out (a 14-digit case number: 4-5 s, the main menu: 20 s). A
# caller's own '#' during such a say skips the rest of that number.
RELEASE_KEY = "#"
PROMPT_DIR = "hotline"  # sounds/zh/hotline/NAME.wav, rendered at install
# A prompt directory is one plain path component under sounds/<lang>/: nothing that could climb
# out of it ("..", "/") or reach Asterisk's other sound files by an odd name.
_PROMPT_DIR_NAME = re.compile(r"[a-z0-9-]+")
# A menu of this many prompts or more is read with one Read() (2 AGI commands) instead of STREAM FILE
# per prompt and GET DATA for the last; a prompt name must then be safe inside Read()'s arguments.
READ_APP_MIN_PROMPTS = 3
READ_VARIABLE = "IVR_DIGITS"
_PROMPT_NAME = re.compile(r"[A-Za-z0-9_-]+")


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
        if len(prompts) >= READ_APP_MIN_PROMPTS and terminator == "#" and 1 <= max_digits <= 255 \
                and all(_PROMPT_NAME.fullmatch(name) for name in prompts):
            return await self._read_app(prompts, max_digits, timeout_s)
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

    async def _read_app(self, prompts: list[str], max_digits: int, timeout_s: float) -> str:
        """A menu of several prompts as one dialplan Read() plus one GET FULL VARIABLE for its digits and
        status: 2 AGI commands instead of one per prompt, and no gap between prompts where res_agi
        drops a key. Same behaviour as the STREAM FILE .. GET DATA path: any key stops the prompts,
        '#' ends the entry, `timeout_s` between keys, a missing prompt is an error (READSTATUS=ERROR)."""
        files = "&".join(f"{self.prompt_dir}/{name}" for name in prompts)
        timeout = f"{max(timeout_s, 0.5):g}"
        # Read(variable,filenames,maxdigits,options,attempts,timeout)
        await self._guard(self.channel.exec_raw("Read", f"{READ_VARIABLE},{files},{max_digits},,1,{timeout}",
                                                timeout=self.channel.command_timeout + timeout_s * (max_digits + 1)))
        answer = await self._guard(self.channel.get_full_variable(f"${{READSTATUS}}|${{{READ_VARIABLE}}}")) or ""
        status, _, digits = answer.partition("|")
        if status == "HANGUP":
            raise CallerHungUp()
        if status not in ("OK", "TIMEOUT", "INTERRUPTED"):
            # ERROR: a prompt is missing in every language (Read returns at once), SKIPPED: the line is
            # not up. To safety (the server queues the caller), not into silence -- as GET DATA's -1.
            raise AGIError(f"Read() of {len(prompts)} prompts ended with READSTATUS={status or 'unset'}",
                           command="EXEC Read")
        return "".join(ch for ch in digits if ch in ALL_DIGITS)

    async def say_number(self, n: int, interruptible: bool = False) -> str | None:
        return await self._guard(self.channel.say_number(n, ALL_DIGITS if interruptible else RELEASE_KEY))

    async def say_digits(self, s: str, interruptible: bool = False) -> str | None:
        return await self._guard(self.channel.say_digits(s, ALL_DIGITS if interruptible else RELEASE_KEY))

    async def record(self, name: str, max_seconds: int) -> str | None:
        path = f"{self.recordings_dir}/{name}-{self.uniqueid.replace('.', '-').replace(';', '-')}"
        await self.notify("Recording", recording=name)  # lets a simulated caller know when to speak
        result = await self._guard(self.channel.record_file(path, "wav", RELEASE_KEY, max_seconds * 1000, True, 5))
        if result.endpos <= 0:
            return None
        self.recorded.append(path + ".wav")
        return path + ".wav"

    async def notify(self, event: str, **fields) -> None:
        # The UserEvent carries the channel's Uniqueid and Linkedid itself.
        await self._guard(self.channel.user_event(f"Callcenter{event}", **fields))
