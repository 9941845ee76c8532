"""SMS on Twilio (R2.2's SMS channel, R8.2's notifications).

Inbound: a message naming a case number (YYYYMMDD-NNNNNN, dash optional) is a reply on that case; else
a reply on the sender's latest open case; else a new case, channel sms. STOP/退订 (and the usual
English opt-out words) opt the number out; START/订阅 back in. Each message is stored once (its
MessageSid), attached to its case, and audited (A1).

Outbound: `SmsNotifier.send(to, text) -> message id` is the port the citizen-notification code calls;
`TwilioSms` implements it over the REST API (refusing opted-out numbers) and records the delivery
status Twilio calls back. Long messages: `segments()` is the one count of what the carrier sends.
"""
from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session
from twilio.twiml.messaging_response import MessagingResponse

from ticketing import audit
from ticketing.audit import Actor
from ticketing.carrier_model import SmsMessage, SmsOptOut
from ticketing.domain import Domain
from ticketing.enums import OPEN_CASE_STATUSES, CaseKind, Channel, Role
from ticketing.models import Case
from ticketing.numbering import normalize_case_number
from ticketing.privacy import mask_phone
from ticketing.store import session_scope

log = logging.getLogger("callcenter.twilio.sms")
SMS_ACTOR = Actor(user_id=None, name="sms", role=Role.SYSTEM.value)

# --- segmentation --------------------------------------------------------------------------------
# GSM 03.38 basic set (one septet each) and its extension table (two: escape + char).
_GSM_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
              "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXTENDED = "^{}\\[~]|€\f"
GSM_SINGLE, GSM_PART = 160, 153  # septets; a concatenated part loses 7 to its header
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units; a part loses 3 to its header


def segments(text: str) -> list[str]:
    """The parts a carrier sends `text` as: GSM-7 when every character is in the GSM set (160 alone,
    153 per part), else UCS-2 (70 alone, 67 per part; a character outside the BMP takes two units and
    is never cut in half). Chinese is always UCS-2."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text):
        cost, single, part = (lambda ch: 2 if ch in _GSM_EXTENDED else 1), GSM_SINGLE, GSM_PART
    else:
        cost, single, part = (lambda ch: 2 if ord(ch) > 0xFFFF else 1), UCS2_SINGLE, UCS2_PART
    if sum(cost(ch) for ch in text) <= single:
        return [text]
    parts, current, used = [], [], 0
    for ch in text:
        if used + cost(ch) > part:
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += cost(ch)
    parts.append("".join(current))
    return parts


# --- opt-out keywords ------------------------------------------------------------------------------
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "退订", "TD", "取消订阅"})
OPT_IN = frozenset({"START", "UNSTOP", "订阅"})
OPT_OUT_REPLY = "您已退订本热线短信，回复“订阅”可恢复。"
OPT_IN_REPLY = "您已恢复接收本热线短信。"
_CASE_NUMBER = re.compile(r"(?<!\d)(\d{8})-?(\d{6})(?!\d)")
_STATUS_ORDER = {"sending": 0, "accepted": 1, "queued": 1, "sent": 2, "delivered": 3, "undelivered": 3, "failed": 3,
                 "read": 4}


class OptedOut(Exception):
    """The number sent STOP/退订: nothing is sent to it."""


class SmsNotifier(Protocol):
    """The port notification code sends through (R8.2, the portal): returns the carrier's message id;
    raises OptedOut for a number that opted out. Delivery statuses are recorded as they come back."""

    def send(self, to: str, text: str) -> str: ...


def _keyword(body: str) -> str:
    return body.strip().strip("。.!！").upper()


def is_opted_out(session: Session, phone: str) -> bool:
    return session.get(SmsOptOut, phone) is not None


class TwilioSms:
    """SMS both ways over Twilio; `client` is a twilio.rest.Client (tests give it a recording HTTP client)."""

    def __init__(self, domain: Domain, session_factory, client, *, from_number: str, status_url: str):
        self.domain = domain
        self.session_factory = session_factory
        self.client = client
        self.from_number = from_number
        self.status_url = status_url

    def _tx(self, fn: Callable[[Session], Any]) -> Any:
        with session_scope(self.session_factory) as session:
            return fn(session)

    # ---- outbound: the notification port -------------------------------------------------------
    def send(self, to: str, text: str) -> str:
        now = self.domain.clock()

        def prepare(s: Session) -> int:
            if is_opted_out(s, to):
                raise OptedOut(f"{mask_phone(to)} opted out of SMS")
            row = SmsMessage(direction="outbound", phone=to, body=text, segments=len(segments(text)),
                             status="sending", created_at=now, updated_at=now)
            s.add(row)
            s.flush()
            return row.id
        row_id = self._tx(prepare)
        try:
            message = self.client.messages.create(to=to, from_=self.from_number, body=text,
                                                  status_callback=self.status_url)
        except Exception:
            self._tx(lambda s: setattr(s.get(SmsMessage, row_id), "status", "failed"))
            log.warning("sms to %s not sent", mask_phone(to))
            raise

        def sent(s: Session) -> None:
            row = s.get(SmsMessage, row_id)
            row.sid, row.status, row.updated_at = message.sid, message.status or "queued", self.domain.clock()
        self._tx(sent)
        return message.sid

    async def delivery_status(self, params: dict[str, str]) -> None:
        """MessageStatus for MessageSid; a late, earlier status (sent after delivered) changes nothing."""
        sid, status = params.get("MessageSid", ""), params.get("MessageStatus", "")

        def update(s: Session) -> None:
            row = s.execute(select(SmsMessage).where(SmsMessage.sid == sid)).scalar_one_or_none()
            if row is None or _STATUS_ORDER.get(status, -1) < _STATUS_ORDER.get(row.status, -1):
                return
            row.status, row.error_code, row.updated_at = status[:24], (params.get("ErrorCode") or None), self.domain.clock()
        await asyncio.to_thread(self._tx, update)

    # ---- inbound ---------------------------------------------------------------------------------
    async def incoming(self, params: dict[str, str]) -> str:
        """Answers TwiML: a reply for an opt-out/in keyword and for a new case, else nothing."""
        reply = await asyncio.to_thread(self._tx, lambda s: self._receive(s, params))
        response = MessagingResponse()
        if reply:
            response.message(reply)
        return str(response)

    def _receive(self, s: Session, params: dict[str, str]) -> str | None:
        sid, phone, body = params.get("MessageSid", ""), params.get("From", ""), params.get("Body", "")
        now = self.domain.clock()
        if not sid or s.execute(select(SmsMessage.id).where(SmsMessage.sid == sid)).first() is not None:
            return None  # handled once already (the digest guard forgets after its window; this does not)
        message = SmsMessage(sid=sid, direction="inbound", phone=phone, body=body, segments=int(params.get("NumSegments") or 1),
                             status="received", created_at=now, updated_at=now)
        s.add(message)
        keyword = _keyword(body)
        if keyword in OPT_OUT:
            if s.get(SmsOptOut, phone) is None:
                s.add(SmsOptOut(phone=phone, keyword=keyword[:16], at=now))
            audit.record(s, SMS_ACTOR, "sms_opt_out", at=now, channel=Channel.SMS.value)
            return OPT_OUT_REPLY
        if keyword in OPT_IN:
            optout = s.get(SmsOptOut, phone)
            if optout is not None:
                s.delete(optout)
                audit.record(s, SMS_ACTOR, "sms_opt_in", at=now, channel=Channel.SMS.value)
            return OPT_IN_REPLY
        case = self._case_for(s, phone, body)
        if case is not None:
            message.case_id = case.id
            audit.record(s, SMS_ACTOR, "sms_reply_attached", at=now, case_id=case.id, channel=Channel.SMS.value)
            return None
        case = self.domain.workflow(s).accept(SMS_ACTOR, kind=CaseKind.CONSULTATION, channel=Channel.SMS,
                                               title="短信诉求", description=body or "（空短信）", citizen_phone=phone)
        message.case_id = case.id
        return f"您的诉求已受理，编号{case.number}。"

    def _case_for(self, s: Session, phone: str, body: str) -> Case | None:
        """The case a message replies to: the case number it names, else the sender's latest open case."""
        match = _CASE_NUMBER.search(body)
        if match:
            number = normalize_case_number(match.group(1) + match.group(2))
            if number is not None:
                case = s.execute(select(Case).where(Case.number == number)).scalar_one_or_none()
                if case is not None:
                    return case
        if not phone:
            return None
        return s.execute(select(Case).where(Case.citizen_phone == phone, Case.status.in_(OPEN_CASE_STATUSES))
                         .order_by(Case.id.desc()).limit(1)).scalar_one_or_none()
