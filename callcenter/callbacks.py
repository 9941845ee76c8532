"""The callback scheduler put together: the PBX port of callback/ over our AMI client, and the
service with the install's settings, database and recording retention.

callback/ knows no AMI and no settings (callback/pbx.py says what it needs); this module is
where AMI's answers and errors become the port's outcomes.
"""
from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from callback.pbx import ANSWERED, NOT_ANSWERED, REFUSED, DialResult, NotSent, OutcomeUnknown, PbxError
from callcenter.ami.client import AMIClient
from callcenter.ami.errors import AMIError, AMILinkLost, AMINotConnected, AMITimeout
from callcenter.ami.protocol import Message
from callcenter.callcontrol.state import QUEUE, member_from
from callcenter.pbx.names import operator_interface

LEDGER_FAMILY = "callcenter_callback"  # AstDB family written by [outbound-callback]
SURVEY_EXTEN = "survey"  # in the callback's context: the call runs ivr/survey over FastAGI
NOTICE_EXTEN = "notify"  # ... and a voice notice's call ivr/notify (issue 14 item 5)
# The runner needs only call events (OriginateResponse, Hangup): logging in with this filter spares
# it parsing every dialplan event of a busy PBX. Action replies (DBGet, CoreShowChannels) still come.
AMI_EVENTS = "call,system"  # system: FullyBooted after login
# Of those the runner reads only these; a client of its own asks Asterisk for no others (a busy
# callback is ~42 call events, 7 with the filter: parsing them was the scheduler's biggest cost).
AMI_EVENT_FILTER = "Event: (OriginateResponse|Hangup)"
MISSED_AMI_EVENTS = "call,system,user"  # user: the dialplan's CallcenterCallbackEnd (the citizen's dial status)


def narrow_events(client: AMIClient) -> None:
    """For an AMI client used only by the runner: after every login, Asterisk sends it only the
    events the runner reads (Manager `Filter`, per session; action replies are not filtered)."""
    async def add_filter(ami: AMIClient, _first: bool) -> None:
        await ami.send_action({"Action": "Filter", "Operation": "Add", "Filter": AMI_EVENT_FILTER}, timeout=5)
    client.on_connected(add_filter)


def _port_error(exc: AMIError) -> PbxError:
    """The port's error for an AMI one: only whether the action may have run matters to callback/."""
    if isinstance(exc, AMINotConnected):
        return NotSent(str(exc))
    if isinstance(exc, (AMILinkLost, AMITimeout)):
        return OutcomeUnknown(str(exc))
    return PbxError(str(exc))


def _result(reply: Message) -> DialResult:
    if reply.is_response:  # Error: Asterisk refused the action, nothing was dialled
        return DialResult(REFUSED, message=f"{reply.get_first('Message')}")
    if reply.get_first("Response") == "Success":
        return DialResult(ANSWERED)
    return DialResult(NOT_ANSWERED, reason=int(reply.get_first("Reason") or 0))


class _Dialling:
    """The answer of an Originate already written: awaited once, or closed unawaited."""

    __slots__ = ("_reply",)

    def __init__(self, reply: Coroutine[Any, Any, Message]) -> None:
        self._reply = reply

    def __await__(self):
        return self._wait().__await__()

    async def _wait(self) -> DialResult:
        try:
            reply = await self._reply
        except AMIError as exc:
            raise _port_error(exc) from exc
        return _result(reply)

    def close(self) -> None:
        self._reply.close()


class AmiCallbackPbx:
    """`callback.pbx.CallbackPbx` over an AMI client (which never re-sends an action)."""

    carrier = "asterisk"

    def __init__(self, ami: AMIClient) -> None:
        self.ami = ami

    @classmethod
    def from_settings(cls, settings: Any) -> AmiCallbackPbx:
        """A client of its own for the runner, asking Asterisk only for the events it reads."""
        ami = AMIClient.from_settings(settings, events=AMI_EVENTS)
        narrow_events(ami)
        return cls(ami)

    @property
    def connected(self) -> bool:
        return self.ami.connected

    def originate(self, *, phone: str, key: str, case_number: str, channel_id: str, context: str,
                  caller_id: str, dial_timeout: float) -> _Dialling:
        try:
            reply = self.ami.send_originate(
                f"Local/{phone}@{context}", context=context, exten=SURVEY_EXTEN, priority=1, caller_id=caller_id,
                channel_id=channel_id, dial_timeout=dial_timeout,
                variables={"__CALLBACK_KEY": key, "__CALLBACK_LEDGER": channel_id, "CALLBACK_CASE": case_number},
            )
        except AMIError as exc:
            raise _port_error(exc) from exc
        return _Dialling(reply)

    def on_hangup(self, callback: Callable[[str], None]):
        def hung_up(msg: Message) -> None:
            callback(msg.get_first("Uniqueid") or "")
        return self.ami.subscribe(hung_up, ["Hangup"])

    async def channels_up(self, timeout: float) -> set[str]:
        try:
            _resp, items = await self.ami.send_action_list({"Action": "CoreShowChannels"}, timeout=timeout)
        except AMIError as exc:
            raise _port_error(exc) from exc
        return {i.get_first("Uniqueid") for i in items}

    async def callback_calls(self, context: str, timeout: float) -> set[str]:
        # Originate's Local/<number>@<context> gives "Local/<number>@<context>-<n>;1": its Uniqueid
        # is the ChannelId we set (the ;2 half and the citizen's leg would count the call twice)
        try:
            _resp, items = await self.ami.send_action_list({"Action": "CoreShowChannels"}, timeout=timeout)
        except AMIError as exc:
            raise _port_error(exc) from exc
        marker = f"@{context}-"
        return {i.get_first("Uniqueid") for i in items
                if (name := i.get_first("Channel") or "").startswith("Local/") and marker in name
                and name.endswith(";1")}

    async def hangup(self, channel_id: str) -> None:
        try:
            _resp, items = await self.ami.send_action_list({"Action": "CoreShowChannels"})
            for item in items:
                if item.get_first("Uniqueid") == channel_id:
                    await self.ami.send_action({"Action": "Hangup", "Channel": item.get_first("Channel")})
        except AMIError as exc:
            raise _port_error(exc) from exc

    async def ledger_has(self, channel_id: str, timeout: float) -> bool:
        try:
            resp, _items = await self.ami.send_action_list(
                {"Action": "DBGet", "Family": LEDGER_FAMILY, "Key": channel_id}, timeout=timeout)
        except AMIError as exc:
            raise _port_error(exc) from exc
        return resp.success

    async def ledger_forget(self, channel_id: str, timeout: float) -> None:
        try:
            await self.ami.send_action({"Action": "DBDel", "Family": LEDGER_FAMILY, "Key": channel_id},
                                       timeout=timeout)
        except AMIError as exc:
            raise _port_error(exc) from exc

    async def ledger_ids(self, timeout: float) -> set[str]:
        try:
            resp, items = await self.ami.send_action_list({"Action": "DBGetTree", "Family": LEDGER_FAMILY},
                                                          timeout=timeout)
        except AMIError as exc:
            raise _port_error(exc) from exc
        if not resp.success:  # an empty family answers Success with no items; Error: could not read
            raise PbxError(f"DBGetTree refused: {resp.get_first('Message')}")
        prefix = f"/{LEDGER_FAMILY}/"  # Asterisk gives the whole path: /callcenter_callback/<id>
        return {key[len(prefix):] for i in items if (key := i.get_first("Key") or "").startswith(prefix)}

    async def start(self) -> None:
        await self.ami.start(wait=False)  # keeps trying in the background; Asterisk may start later

    async def stop(self) -> None:
        await self.ami.stop()


class AmiMissedCallPbx(AmiCallbackPbx):
    """`callback.pbx.MissedCallPbx` over an AMI client: the operator's phone is originated into
    `[outbound-callback]` with the citizen's number as the extension (the dialplan writes the ledger
    entry and dials the citizen once the operator answered); its `h` sends `CallcenterCallbackEnd`
    with the citizen's DIALSTATUS."""

    @classmethod
    def from_settings(cls, settings: Any) -> AmiMissedCallPbx:
        # a few calls a day: its own client, with the call end events besides the runner's own
        ami = AMIClient.from_settings(settings, events=MISSED_AMI_EVENTS)

        async def add_filters(client: AMIClient, _first: bool) -> None:
            for regex in (AMI_EVENT_FILTER, "UserEvent: CallcenterCallbackEnd"):
                await client.send_action({"Action": "Filter", "Operation": "Add", "Filter": regex}, timeout=5)
        ami.on_connected(add_filters)
        return cls(ami)

    async def free_operators(self, timeout: float) -> list[str]:
        # the queue's waiting callers come first: while any waits, no operator is free for a callback
        try:
            _resp, items = await self.ami.send_action_list({"Action": "QueueStatus", "Queue": QUEUE}, timeout=timeout)
        except AMIError as exc:
            raise _port_error(exc) from exc
        if any((i.name or "").lower() == "queueentry" for i in items):
            return []
        members = [member_from(i) for i in items if (i.name or "").lower() == "queuemember"]
        return [m.extension for m in members if m.extension and m.availability == "free"]

    def originate_via_operator(self, *, operator: str, phone: str, key: str, channel_id: str, context: str,
                               caller_id: str, ring_timeout: float) -> _Dialling:
        try:
            reply = self.ami.send_originate(
                operator_interface(operator), context=context, exten=phone, priority=1, caller_id=caller_id,
                channel_id=channel_id, dial_timeout=ring_timeout,
                variables={"__CALLBACK_KEY": key, "__CALLBACK_LEDGER": channel_id},
            )
        except AMIError as exc:
            raise _port_error(exc) from exc
        return _Dialling(reply)

    def on_callback_end(self, callback: Callable[[str, str], None]):
        def ended(msg: Message) -> None:
            if msg.get_first("UserEvent") == "CallcenterCallbackEnd":
                callback(msg.get_first("Ledger") or "", msg.get_first("DialStatus") or "")
        return self.ami.subscribe(ended, ["UserEvent"])


class AmiNoticePbx(AmiCallbackPbx):
    """`callback.pbx.NoticePbx` over an AMI client: `Local/<duty phone>@outbound-callback` with
    CALLBACK_PHONES=unit-phones (the ;2 half writes the ledger entry and rings the unit's phone, routed
    as warm transfers are), answered into `notify` (ivr/notify over FastAGI). A notice to a citizen
    (facts' recipient `citizen`) rings the citizen's line as a 回访 call does (no CALLBACK_PHONES)."""

    def originate_notice(self, *, phone: str, key: str, channel_id: str, context: str, caller_id: str,
                         ring_timeout: float, facts: dict[str, str]) -> _Dialling:
        try:
            reply = self.ami.send_originate(
                f"Local/{phone}@{context}", context=context, exten=NOTICE_EXTEN, priority=1, caller_id=caller_id,
                channel_id=channel_id, dial_timeout=ring_timeout,
                variables={"__CALLBACK_KEY": key, "__CALLBACK_LEDGER": channel_id,
                           **({} if facts.get("recipient") == "citizen" else {"__CALLBACK_PHONES": "unit-phones"}),
                           "CALLBACK_CASE": facts.get("case_number", ""), "CALLBACK_DUE": facts.get("due_date", ""),
                           "CALLBACK_DUE_HOUR": facts.get("due_hour", "")},
            )
        except AMIError as exc:
            raise _port_error(exc) from exc
        return _Dialling(reply)


def sms_configured(settings: Any) -> bool:
    """Whether citizens' notices may go by SMS: the Twilio account and the number texts come from."""
    return bool(settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from_number)


def callback_service(settings: Any, *, domain=None, engine=None, pbx: AmiCallbackPbx | None = None, **kwargs):
    """The scheduler service of this install (callback/service.py). Without `pbx` it gets an AMI
    client of its own (CALLBACK_DRIVER=twilio: the Twilio port, callcenter/twilio/outbound.py), started
    and stopped with it, and (missed-call callbacks on in the policy, on Asterisk) another for those;
    given a `pbx`, missed-call callbacks run only with a `missed_pbx` given too. Voice notices
    (callback/notify_runner.py) ride on its own Asterisk link, the same Originate and ledger."""
    from callback.service import CallbackService
    from callcenter.callcontrol.recording import purge_recordings
    from ticketing.domain import Domain
    from callcenter.audit_vault import install as install_audit_vault

    install_audit_vault(settings.state_dir)
    engine = engine or settings.store_engine()
    owns_pbx = pbx is None
    if pbx is None and settings.callback_driver == "twilio":  # the same runner, the carrier's port
        from callcenter.twilio.wiring import callback_port
        from ticketing.store import make_session_factory

        pbx = callback_port(settings, make_session_factory(engine))

    def retention(session, now, retention_days: int) -> int:
        return purge_recordings(session, now, retention_days, settings=settings)

    domain = domain or Domain.load(settings.config_dir)
    # missed-call callbacks ring an operator's phone first: an Asterisk feature (not on Twilio yet)
    if (owns_pbx and settings.callback_driver != "twilio" and domain.policy.missed_calls.automatic
            and "missed_pbx" not in kwargs):
        kwargs.update(missed_pbx=AmiMissedCallPbx.from_settings(settings), owns_missed_pbx=True)
    if sms_configured(settings) and "sms_sender" not in kwargs:  # citizens' notices by SMS (R8.2)
        from callcenter.twilio.wiring import sms_sender
        from ticketing.store import make_session_factory

        kwargs.update(sms_sender=sms_sender(settings, domain, make_session_factory(engine)))
    if pbx is None:
        pbx = AmiNoticePbx.from_settings(settings)  # the survey's link; voice notices ride on it
        rules = domain.policy.notifications  # urges, and citizens' notices by voice
        if (rules.voice_kinds or rules.citizen_voice_channels or rules.portal_confirmation) and "notice_pbx" not in kwargs:
            kwargs.update(notice_pbx=pbx)
    return CallbackService(domain, engine, pbx, owns_pbx=owns_pbx,
                           purge_recordings=retention, **kwargs)


__all__ = ["AMI_EVENTS", "AMI_EVENT_FILTER", "AmiCallbackPbx", "AmiMissedCallPbx", "AmiNoticePbx", "LEDGER_FAMILY",
           "callback_service", "narrow_events", "sms_configured"]
