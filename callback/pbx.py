"""What the callback runner needs from the telephone system: the "originate" port.

The runner knows no AMI. The composition root gives it an implementation of `CallbackPbx`
(callcenter/callbacks.py, over the AMI client; callcenter/twilio/outbound.py, over Twilio's REST
API); tests may give it a fake. The port keeps the one
guarantee the runner's exactly-once bookkeeping rests on: an Originate is sent at most once and
never replayed, and a failure says whether it was certainly not sent (`NotSent`) or may have run
(`OutcomeUnknown`: reconcile, never dial again blindly).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


class PbxError(Exception):
    """The telephone system did not do what was asked (base of the port's errors)."""


class NotSent(PbxError):
    """Certainly not sent (the link is down): the same attempt may be tried again."""


class OutcomeUnknown(PbxError):
    """Sent, but its answer was lost (the link dropped, no answer in time): it MAY have run."""


# The outcomes of a dial that was sent and answered by the telephone system.
ANSWERED = "answered"          # the citizen picked up; the survey runs over FastAGI
REFUSED = "refused"            # the telephone system refused the request: nothing was dialled
NOT_ANSWERED = "not_answered"  # dialled, no conversation: `reason` says why (busy, no answer...)


@dataclass(frozen=True, slots=True)
class DialResult:
    outcome: str
    reason: int = 0     # NOT_ANSWERED: the Originate reason code (ticketing.dialing.dial_result names it)
    message: str = ""   # REFUSED: what the telephone system said
    uniqueid: str = ""  # the call's id in the call log when the telephone system names it (a carrier's
    #                     call sid); by default the channel id given to `originate`


class Dialling(Awaitable[DialResult], Protocol):
    """A dial already sent; await it for its result. `close()` drops a result nobody will await."""

    def close(self) -> None: ...


class Subscription(Protocol):
    def close(self) -> None: ...


class CallbackPbx(Protocol):
    carrier: str  # the driver its calls are logged as carried by (ticketing.calls: asterisk, twilio)

    @property
    def connected(self) -> bool:
        """True while the telephone system can be reached (nothing to reconcile against otherwise)."""

    def originate(self, *, phone: str, key: str, case_number: str, channel_id: str, context: str,
                  caller_id: str, dial_timeout: float) -> Dialling:
        """Send the survey call now (before returning; `NotSent` raised here when it cannot be).
        The new channel's unique id is `channel_id`; the telephone system notes it in its ledger
        before it dials."""

    def on_hangup(self, callback: Callable[[str], None]) -> Subscription:
        """Call `callback(unique id)` for every channel that hangs up."""

    async def channels_up(self, timeout: float) -> set[str]:
        """The unique ids of the channels up now."""

    async def callback_calls(self, context: str, timeout: float) -> set[str]:
        """The channel ids (as given to `originate`) of the callback calls into `context` that the
        telephone system still carries, whoever placed them: after a restart they hold lines too."""

    async def hangup(self, channel_id: str) -> None:
        """Hang up the channel with this unique id (if it is still up)."""

    async def ledger_has(self, channel_id: str, timeout: float) -> bool:
        """Whether the telephone system noted this dial in its ledger (it was dialled)."""

    async def ledger_forget(self, channel_id: str, timeout: float) -> None:
        """Drop the ledger entry of a settled attempt."""

    async def ledger_ids(self, timeout: float) -> set[str]:
        """The channel ids of every ledger entry (to sweep the entries of settled attempts)."""

    async def start(self) -> None:
        """Connect, and keep trying in the background (for a service that owns its link)."""

    async def stop(self) -> None: ...


class MissedCallPbx(CallbackPbx, Protocol):
    """What 漏接回拨 (callback/missed_runner.py) needs besides: the operators free now, and a call
    that rings an operator first and then, once answered, the citizen (bridged)."""

    async def free_operators(self, timeout: float) -> list[str]:
        """Extensions of the operators logged into the hotline queue, not paused and not on a call."""

    def originate_via_operator(self, *, operator: str, phone: str, key: str, channel_id: str, context: str,
                               caller_id: str, ring_timeout: float) -> Dialling:
        """Ring `operator`'s phone (sent before returning, at most once); answered, the dialplan notes
        `channel_id` in its ledger and dials `phone`. ANSWERED = the operator answered."""

    def on_callback_end(self, callback: Callable[[str, str], None]) -> Subscription:
        """Call `callback(channel id, dial status)` when such a call ends (dial status as Asterisk's
        DIALSTATUS: ANSWER = the citizen answered)."""


class NoticePbx(CallbackPbx, Protocol):
    """What voice notices (callback/notify_runner.py) need besides: a call to a duty phone that the
    dialplan notes in its ledger before it dials, and that runs the notice's voice flow once answered.
    (An SMS sender would be a port of its own: send(phone, text, key) -> accepted or NotSent; see README.)"""

    def originate_notice(self, *, phone: str, key: str, channel_id: str, context: str, caller_id: str,
                         ring_timeout: float, facts: dict[str, str]) -> Dialling:
        """Ring `phone` (sent before returning, at most once); answered, `ivr/notify` speaks `facts`
        (case_number, due_date, due_hour) and records key 1 against `key`. ANSWERED = it answered.
        `facts["recipient"]`: "unit" rings a duty phone, "citizen" the citizen's line (R8.2)."""


__all__ = ["ANSWERED", "CallbackPbx", "MissedCallPbx", "NoticePbx", "DialResult", "Dialling", "NOT_ANSWERED", "NotSent", "OutcomeUnknown",
           "PbxError", "REFUSED", "Subscription"]
