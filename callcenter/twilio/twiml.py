"""The ReplayDriver's verbs as TwiML, built with the `twilio` package: prompts as <Say language="zh-CN">
of their Mandarin text (ivr_flows/prompts.yaml), or <Play> of the install's rendered prompts when a
prompt URL is configured; <Gather input="dtmf"> with the flow's timeout and terminator; <Record>; and the
end of the menu: <Enqueue> (or <Dial>) to reach an operator, else <Hangup>."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from twilio.twiml.voice_response import Gather, VoiceResponse

from .replay import Verb

LANGUAGE = "zh-CN"
# Digits said one by one, as the prompts write phone numbers (幺 for 1: 一 is misheard as 七).
_SPOKEN_DIGITS = dict(zip("0123456789", "零幺二三四五六七八九", strict=True))


@dataclass
class Speaker:
    """How prompts sound: `texts` from prompts.yaml; `prompt_url`: <Play> {prompt_url}/{name}.wav instead."""

    texts: Mapping[str, str]
    prompt_url: str = ""

    def add(self, target: VoiceResponse | Gather, verb: Verb) -> None:
        if verb.kind == "play":
            for name in verb.value:
                if self.prompt_url:
                    target.play(f"{self.prompt_url.rstrip('/')}/{name}.wav")
                else:
                    target.say(self.texts.get(name, ""), language=LANGUAGE)
        elif verb.kind == "say_number":
            target.say(str(verb.value), language=LANGUAGE)
        elif verb.kind == "say_digits":
            target.say(" ".join(_SPOKEN_DIGITS[d] for d in verb.value if d in _SPOKEN_DIGITS), language=LANGUAGE)
        else:
            raise ValueError(f"not a prompt verb: {verb.kind}")


def _plays(speaker: Speaker, target: VoiceResponse, verbs: list[Verb]) -> None:
    for verb in verbs:
        speaker.add(target, verb)


def _trailing_interruptible(verbs: list[Verb]) -> int:
    """Index where the run of interruptible verbs just before the input starts: those go inside the
    <Gather> (a key stops them and counts at the input, the engine's barge-in); earlier ones before it."""
    start = len(verbs)
    while start > 0 and verbs[start - 1].interruptible:
        start -= 1
    return start


def _recorded(recording_url: str) -> dict:
    """A recording's status callback (recordings.py fetches it into the recording store)."""
    if not recording_url:
        return {}
    return {"recording_status_callback": recording_url, "recording_status_callback_method": "POST",
            "recording_status_callback_event": "completed"}


def waiting(speaker: Speaker, verbs: list[Verb], action_url: str, recording_url: str = "") -> str:
    """TwiML for a suspended flow: `verbs` end with the gather or record it waits for."""
    response = VoiceResponse()
    *plays, last = verbs
    if last.kind == "gather":
        cut = _trailing_interruptible(plays)
        _plays(speaker, response, plays[:cut])
        opts = last.options
        gather = response.gather(input="dtmf", num_digits=opts["max_digits"],
                                 timeout=max(1, math.ceil(opts["timeout_s"])), finish_on_key=opts["terminator"],
                                 action=action_url, method="POST", action_on_empty_result=True)
        for verb in plays[cut:]:
            speaker.add(gather, verb)
        speaker.add(gather, Verb("play", last.value, True))
    elif last.kind == "record":
        _plays(speaker, response, plays)
        response.record(action=action_url, method="POST", max_length=last.options["max_seconds"], finish_on_key="#",
                        play_beep=True, timeout=5, **_recorded(recording_url))
        # Twilio does not call the action of an empty recording; it goes on to the next verb: say so.
        response.redirect(f"{action_url}&empty=1", method="POST")
    else:
        raise ValueError(f"a suspended flow ends with gather or record, not {last.kind}")
    return str(response)


def enqueue(response: VoiceResponse, queue: str, action_url: str, wait_url: str = "") -> None:
    """<Enqueue>: the caller waits for an operator; with a wait URL, the operators' queue of
    agents.py offers them (hold music from there)."""
    more = {"wait_url": wait_url, "wait_url_method": "POST"} if wait_url else {}
    response.enqueue(queue, action=action_url, method="POST", **more)


def finished(speaker: Speaker, verbs: list[Verb], *, queued: bool, queue: str, operator_number: str,
             queue_action_url: str, recording_url: str = "", queue_wait_url: str = "") -> str:
    """TwiML once the flow has ended: the last prompts, then an operator (the conversation recorded,
    as Asterisk's queue records it) or the end of the call."""
    response = VoiceResponse()
    _plays(speaker, response, verbs)
    if queued and operator_number:
        response.dial(operator_number, action=queue_action_url, method="POST",
                      **({"record": "record-from-answer", **_recorded(recording_url)} if recording_url else {}))
    elif queued:
        enqueue(response, queue, queue_action_url, queue_wait_url)
    else:
        response.hangup()
    return str(response)


def hang_up() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def to_pbx(sip_uri: str) -> str:
    """Hand the call to the install's PBX, which runs the menu itself (routing.py)."""
    response = VoiceResponse()
    dial = response.dial()
    dial.sip(sip_uri)
    return str(response)
