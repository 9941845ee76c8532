"""What a cloud carrier's driver (callcenter/twilio/) keeps between its stateless webhooks: one row per
call running a voice flow, the webhook requests already answered (replay guard), SMS messages both
ways and the numbers that opted out of SMS.

Its own module because models.py is full; models.py imports it at its end so the tables are in
`Base.metadata`. The call itself is logged in `calls` by ticketing/calls.py, as for Asterisk.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.models import Base


class CarrierCall(Base):
    """One call's voice-flow state between webhooks: the flow, its starting variables and the journal
    of everything the flow has been answered so far (digits, recordings, action results), which the
    next webhook replays through the unchanged flow engine. `step` counts the answers taken: a
    webhook for another step than the one awaited is a replay."""

    __tablename__ = "carrier_calls"
    __table_args__ = (UniqueConstraint("call_sid", name="uq_carrier_calls_sid"),
                      Index("ix_carrier_calls_outbound_key", "outbound_key"),
                      Index("ix_carrier_calls_queue_state", "queue_state"))

    id: Mapped[int] = mapped_column(primary_key=True)
    driver: Mapped[str] = mapped_column(String(16), default="twilio")
    call_sid: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    flow: Mapped[str] = mapped_column(String(32))
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    journal: Mapped[list[Any]] = mapped_column(JSON, default=list)
    step: Mapped[int] = mapped_column(Integer, default=0)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    outcome: Mapped[str | None] = mapped_column(String(32))  # set once the flow has finished
    outbound_key: Mapped[str | None] = mapped_column(String(80))  # a callback survey's idempotency key
    # call control moved the call into a conference room (callcenter/twilio/conference.py): its TwiML,
    # which the operator <Dial>'s action answers too (the bridge ends when the operator's leg moves)
    room_twiml: Mapped[str | None] = mapped_column(Text)
    # the operator queue on Twilio (callcenter/twilio/agents.py): queued -> offered (dequeued to an
    # operator's room) -> ringing (the operator's phone rung: committed before the request) ->
    # connected -> done; the operator's extension and the room (a conference) once offered
    queue_state: Mapped[str | None] = mapped_column(String(16))
    operator: Mapped[str | None] = mapped_column(String(16))
    room: Mapped[str | None] = mapped_column(String(64))
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CarrierAgent(Base):
    """An operator who answers the hotline queue on Twilio: where to ring them (client:op8001, or a
    phone number from the configuration), whether they take calls, and the citizen call they are
    offered or talking to (one at a time: claimed by a conditional update, so two app processes
    never offer one operator two calls)."""

    __tablename__ = "carrier_agents"

    extension: Mapped[str] = mapped_column(String(16), primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    logged_in: Mapped[bool] = mapped_column(default=True)
    paused: Mapped[bool] = mapped_column(default=False)
    pause_reason: Mapped[str] = mapped_column(String(40), default="")
    call_sid: Mapped[str | None] = mapped_column(String(64))  # the citizen's call offered / answered
    leg_sid: Mapped[str | None] = mapped_column(String(64))  # the operator's own leg, once rung
    updated_at: Mapped[datetime]  # the longest idle is offered first, as the queue's strategy does


class CarrierRequest(Base):
    """A signed webhook request already answered, by a digest of its URL and parameters: the same
    signed request arriving again is a replay. Kept for the replay window, then pruned."""

    __tablename__ = "carrier_requests"
    __table_args__ = (Index("ix_carrier_requests_seen_at", "seen_at"),)

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime]


class SmsMessage(Base):
    """One SMS, inbound (a case or a reply on one) or outbound (a notification), with the carrier's
    message id and its latest delivery status."""

    __tablename__ = "sms_messages"
    __table_args__ = (UniqueConstraint("sid", name="uq_sms_messages_sid"),
                      Index("ix_sms_messages_phone_at", "phone", "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str | None] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(16))  # inbound, outbound
    phone: Mapped[str] = mapped_column(String(40))  # the citizen's number
    body: Mapped[str] = mapped_column(Text)
    segments: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(24))  # received, refused_opt_out, queued, sent, delivered, failed...
    error_code: Mapped[str | None] = mapped_column(String(16))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SmsOptOut(Base):
    """A number that sent STOP/退订: no further SMS to it until it sends START/订阅."""

    __tablename__ = "sms_opt_outs"

    phone: Mapped[str] = mapped_column(String(40), primary_key=True)
    keyword: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
