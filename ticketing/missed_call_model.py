"""The stored callback of a missed call (漏接电话回拨, 国办函〔2025〕66号): which number the front desk
called back, when and with what result. Its own module because models.py is at its size limit;
models.py imports it at its end. The rules are in `ticketing.missed_calls`.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.models import Base


class MissedCallback(Base):
    """One call back to a number that gave up in the operator queue."""

    __tablename__ = "missed_callbacks"
    __table_args__ = (Index("ix_missed_callbacks_number_at", "caller_number", "called_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    caller_number: Mapped[str] = mapped_column(String(40))
    called_at: Mapped[datetime]
    called_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reached: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str] = mapped_column(Text, default="")
