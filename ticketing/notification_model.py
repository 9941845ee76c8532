"""A notice's delivery (issue 14 item 5): a `UnitNotification` (an R7.7 urge) carried to the
unit's duty phone, or a `CitizenNotice` (R8.2: the unit tells the citizen it has the case; the
portal's confirmation) carried to the citizen's line, by a channel (`voice` now; `sms` once an SMS
sender is wired), with its tries and the acknowledgement. Its own module because models.py is at its
size limit; models.py imports it at its end. The rules are callback/notify.py's.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.models import Base, WorkOrder

DELIVERY_OPEN_STATES = ("scheduled", "dialing", "answered")
# what a citizen is told (CitizenNotice.kind)
UNIT_NOTICE = "unit_notice"                  # R8.2: the unit has the case, and what happens next
PORTAL_CONFIRMATION = "portal_confirmation"  # issue 14: the portal's request got this case number


class CitizenNotice(Base):
    """A notice to the citizen of a case, made once per subject (`origin`: the work order of an R8.2
    notice, the case of a portal confirmation); the number called is the case's at the time."""

    __tablename__ = "citizen_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    origin: Mapped[str] = mapped_column(String(40), unique=True)  # "wo:<id>" | "case:<id>"
    kind: Mapped[str] = mapped_column(String(30))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    work_order_id: Mapped[int | None] = mapped_column(ForeignKey("work_orders.id"))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("member_units.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # the delivery channel asked for: voice | sms
    at: Mapped[datetime]


class NotificationDelivery(Base):
    """One notice by one channel: planned once (the unique pair), tried up to the policy's tries."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (UniqueConstraint("notification_id", "channel", name="uq_notification_deliveries_channel"),
                      UniqueConstraint("citizen_notice_id", "channel", name="uq_notification_deliveries_citizen"))

    id: Mapped[int] = mapped_column(primary_key=True)
    # exactly one of the two: a notice to a unit (urge) or to a citizen
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("unit_notifications.id"))
    citizen_notice_id: Mapped[int | None] = mapped_column(ForeignKey("citizen_notices.id"))
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    # this try's key, and so its call's channel id and ledger entry; a new one for every try
    idempotency_key: Mapped[str] = mapped_column(String(60), unique=True)
    tries: Mapped[int] = mapped_column(Integer, default=0)  # tries settled that were not acknowledged
    scheduled_for: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    target_role: Mapped[str] = mapped_column(String(10), default="")  # duty role of this try: A, B; citizen
    phone: Mapped[str] = mapped_column(String(40), default="")        # number of this try (digits)
    acknowledged_at: Mapped[datetime | None]
    detail: Mapped[str] = mapped_column(Text, default="")


# the planner's scan for R8.2 notices the hotline is to deliver (callback/notify.py, migration 0023)
Index("ix_wo_notify_channel_at", WorkOrder.notify_channel, WorkOrder.notified_at)
