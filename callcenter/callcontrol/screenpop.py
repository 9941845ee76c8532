"""Screen-pop: when the queue connects a caller to an operator, that operator's feed gets who is
calling, what the caller did in the voice menu and the number's open and recent cases.

Matching: the queue's ``AgentConnect`` names the caller's channel (``Uniqueid``) and the operator's
(``DestUniqueid``). The IVR ran on that same channel, so its call record has ``Call.uniqueid`` equal
to it (``flow_path``, ``digits``, ``case_id``). If the record has no case, the channel variable
``CALLCENTER_CASE_ID`` (set by the IVR before queueing) is read as a fallback.

漏接回拨 (callback/missed_runner.py): the scheduler rings an operator's phone to call a missed caller
back; that channel's id carries the attempt's key, so its ``Newchannel`` pops (while it rings) with
``reason: missed_call_callback`` and why: how often the number gave up, when, and how long it waited.

R4.1: if the call carries a case made in the voice menu, the operator who answers becomes its owner
(first-contact responsibility), unless another operator already owns it.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callcenter.ami.errors import AMIError
from callcenter.ami.protocol import Message
from callcenter.auth import actor_of
from callcenter.callcontrol.link import CallLink
from callback import missed
from callcenter.pbx.names import operator_of_channel, operator_of_interface
from ticketing import calls
from ticketing.access import CONFIDENTIAL_PLACEHOLDER, may_read_content
from ticketing.audit import Actor
from ticketing.domain import Domain
from ticketing.enums import OPEN_CASE_STATUSES, Role
from ticketing.errors import DomainError
from ticketing.models import Call, Case, User
from ticketing.privacy import mask_phone

log = logging.getLogger("callcenter.callcontrol.screenpop")


# A pop goes to whoever answers at an operator's extension: read as front desk when no user is logged in there.
_UNKNOWN_OPERATOR = Actor(user_id=None, name="operator", role=Role.FRONT_DESK.value)


def case_summary(case: Case, reader: Actor = _UNKNOWN_OPERATOR) -> dict[str, Any]:
    """What the operator sees of a case in the pop; content the reader may not read (R7.3c) stays hidden."""
    hidden = not may_read_content(reader, case)
    return {
        "id": case.id, "number": case.number, "status": case.status.value, "kind": case.kind.value,
        "title": CONFIDENTIAL_PLACEHOLDER if hidden else case.title,
        "confidential": hidden,
        "accepted_at": case.accepted_at.isoformat() if case.accepted_at else None,
        "deadline_at": case.deadline_at.isoformat() if getattr(case, "deadline_at", None) else None,
    }


class ScreenPop:
    def __init__(self, link: CallLink | None, session_factory: sessionmaker[Session], domain: Domain, *,
                 recent_days: int = 180, recent_limit: int = 5,
                 publish: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        """``link`` None: pops asked for by another driver (callcenter/twilio/agents.py), published
        through ``publish`` (the AMI link's feed when there is one)."""
        self.link = link
        self.session_factory = session_factory
        self.domain = domain
        self.recent_days = recent_days
        self.recent_limit = recent_limit
        self.publish = publish or (link.publish if link is not None else None)
        self.sent: list[dict[str, Any]] = []  # last pops, for diagnostics/tests
        if link is not None:
            link.on_event(self._on_event)

    async def _on_event(self, msg: Message) -> None:
        if (msg.name or "").lower() == "newchannel":
            await self._on_new_channel(msg)
            return
        if (msg.name or "").lower() != "agentconnect" or msg.get_first("Queue") != self.link.queue_name:
            return
        ext = operator_of_interface(msg.get_first("Interface"))
        if not ext:
            return
        try:
            await self.pop(ext, caller_uniqueid=msg.get_first("Uniqueid") or "",
                           linkedid=msg.get_first("Linkedid") or "",
                           operator_uniqueid=msg.get_first("DestUniqueid") or "",
                           caller_number=msg.get_first("CallerIDNum") or "",
                           holdtime=msg.get_first("HoldTime"))
        except Exception:
            log.exception("screen-pop for operator %s failed", ext)

    async def _on_new_channel(self, msg: Message) -> None:
        ext = operator_of_channel(msg.get_first("Channel"))
        key = missed.key_of_channel(msg.get_first("Uniqueid") or "")
        if not ext or not key:
            return
        try:
            await self.pop_missed_callback(ext, key, operator_uniqueid=msg.get_first("Uniqueid") or "")
        except Exception:
            log.exception("missed-call screen-pop for operator %s failed", ext)

    async def pop_missed_callback(self, extension: str, key: str, *, operator_uniqueid: str = "") -> dict | None:
        """The pop of a missed-call callback ringing this operator: the caller's cases, and why."""
        def facts():
            with self.session_factory() as session:
                return missed.why(session, self.domain, key)
        why = await asyncio.to_thread(facts)
        if why is None:
            return None  # not this store's callback (another install or test on a shared Asterisk)
        number = why.pop("caller_number")
        payload = await asyncio.to_thread(self._build, extension, "", "", number, None)
        payload.update(type="screen_pop", operator=extension, reason="missed_call_callback", missed_call=why,
                       caller_uniqueid=None, operator_uniqueid=operator_uniqueid, linkedid=operator_uniqueid,
                       holdtime=None)
        self._publish(extension, payload)
        return payload

    def _publish(self, extension: str, payload: dict[str, Any]) -> None:
        self.sent.append(payload)
        del self.sent[:-100]
        if self.publish is not None:
            self.publish(f"operator:{extension}", payload)
        log.info("screen-pop to operator %s: call %s from %s, %d open case(s)", extension, payload.get("call_id"),
                 mask_phone(payload.get("caller_number")), len(payload["open_cases"]))

    async def pop(self, extension: str, *, caller_uniqueid: str, linkedid: str = "", operator_uniqueid: str = "",
                  caller_number: str = "", holdtime: str | None = None) -> dict[str, Any]:
        """Build the pop, apply R4.1, publish it on ``operator:<ext>`` and return it."""
        channel_case: int | None = None
        chan = self.link.channel(caller_uniqueid) if self.link is not None else None
        if chan is not None:
            try:
                reply = await self.link.ami.send_action(
                    {"Action": "Getvar", "Channel": chan.name, "Variable": "CALLCENTER_CASE_ID"}, timeout=3)
                value = (reply.get_first("Value") or "").strip()
                channel_case = int(value) if value.isdigit() else None
            except AMIError:
                pass
        payload = await asyncio.to_thread(self._build, extension, caller_uniqueid, linkedid or caller_uniqueid,
                                          caller_number, channel_case)
        payload.update(type="screen_pop", operator=extension, caller_uniqueid=caller_uniqueid,
                       operator_uniqueid=operator_uniqueid, linkedid=linkedid or caller_uniqueid,
                       holdtime=float(holdtime) if holdtime and holdtime.replace(".", "", 1).isdigit() else None)
        self._publish(extension, payload)
        return payload

    def _build(self, extension: str, uniqueid: str, linkedid: str, caller_number: str,
               channel_case: int | None) -> dict[str, Any]:
        with self.session_factory() as session:
            call = session.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one_or_none()
            if call is None and linkedid:
                call = session.execute(select(Call).where(Call.linkedid == linkedid).order_by(Call.id)
                                       .limit(1)).scalar_one_or_none()
            number = (call.caller_number if call is not None and call.caller_number else caller_number) or ""
            case_id = (call.case_id if call is not None else None) or channel_case
            owner_note = None
            user = session.execute(select(User).where(User.operator_extension == extension, User.active.is_(True))
                                   .order_by(User.id).limit(1)).scalar_one_or_none()
            if call is not None and user is not None:
                calls.link_call(call, operator_id=user.id)
            if case_id is not None and user is not None and user.role == Role.FRONT_DESK:
                case = session.get(Case, case_id)
                if case is not None:
                    try:
                        self.domain.workflow(session).take_ownership(actor_of(user), case,
                                                                     call_id=call.id if call else None)
                        owner_note = "you"
                    except DomainError as exc:
                        owner_note = "other"
                        log.info("R4.1: case %s keeps its owner: %s", case.number, exc.message)
            reader = actor_of(user) if user is not None else _UNKNOWN_OPERATOR
            open_cases: list[dict[str, Any]] = []
            recent: list[dict[str, Any]] = []
            if number:
                rows = session.execute(select(Case).where(Case.citizen_phone == number).order_by(Case.id.desc())
                                       .limit(200)).scalars().all()
                since = self.domain.clock() - timedelta(days=self.recent_days)
                for case in rows:
                    if case.status in OPEN_CASE_STATUSES:
                        open_cases.append(case_summary(case, reader))
                    elif len(recent) < self.recent_limit and _aware(case.accepted_at) >= since:
                        recent.append(case_summary(case, reader))
            session.commit()
            return {
                "call_id": call.id if call is not None else None,
                "caller_number": number,
                "flow_path": list(call.flow_path or []) if call is not None else [],
                "digits": list(call.digits or []) if call is not None else [],
                "queue_reason": call.outcome_reason if call is not None else None,
                "case_id": case_id,
                "case_owner": owner_note,
                "open_cases": open_cases,
                "recent_cases": recent,
            }


def _aware(value):
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


__all__ = ["ScreenPop", "case_summary"]
