"""A notice's delivery (issue 14 item 5): a `UnitNotification` (an R7.7 urge today) carried to the
unit's duty phone by a channel (`voice` now; `sms` once the Twilio driver exists), with its tries
and the acknowledgement. Its own module because models.py is at its size limit; models.py imports
it at its end. The rules are callback/notify.py's.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.models import Base

DELIVERY_OPEN_STATES = ("scheduled", "dialing", "answered")


class NotificationDelivery(Base):
    """One notice by one channel: planned once (the unique pair), tried up to the policy's tries."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (UniqueConstraint("notification_id", "channel", name="uq_notification_deliveries_channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("unit_notifications.id"))
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    # this try's key, and so its call's channel id and ledger entry; a new one for every try
    idempotency_key: Mapped[str] = mapped_column(String(60), unique=True)
    tries: Mapped[int] = mapped_column(Integer, default=0)  # tries settled that were not acknowledged
    scheduled_for: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    target_role: Mapped[str] = mapped_column(String(10), default="")  # duty role of this try: A, B, line
    phone: Mapped[str] = mapped_column(String(40), default="")        # number of this try (digits)
    acknowledged_at: Mapped[datetime | None]
    detail: Mapped[str] = mapped_column(Text, default="")
