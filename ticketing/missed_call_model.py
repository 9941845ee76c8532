"""The stored callback of a missed call (漏接电话回拨, 国办函〔2025〕66号): which number the front desk
called back, when and with what result. Its own module because models.py is at its size limit;
models.py imports it at its end. The rules are in `ticketing.missed_calls`.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, text
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


# An automatic callback in flight (scheduled, dialing, answered) holds its number: one at a time per number.
MISSED_OPEN_STATES = ("scheduled", "dialing", "answered")
_OPEN = "state in ('scheduled', 'dialing', 'answered')"


class MissedCallbackAttempt(Base):
    """One automatic callback of a missed caller by the scheduler (callback/missed.py): an operator's
    phone rings first, then the citizen's. Its result is a `MissedCallback` row (`callback_id`), so
    the list's rules (ticketing.missed_calls) read automatic and manual callbacks alike."""

    __tablename__ = "missed_callback_attempts"
    __table_args__ = (Index("uq_missed_callback_attempts_open_number", "caller_number", unique=True,
                            sqlite_where=text(_OPEN), postgresql_where=text(_OPEN)),
                      Index("ix_missed_callback_attempts_state", "state", "scheduled_for"))

    id: Mapped[int] = mapped_column(primary_key=True)
    caller_number: Mapped[str] = mapped_column(String(40))
    idempotency_key: Mapped[str] = mapped_column(String(60), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    scheduled_for: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    operator_extension: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(Text)
    callback_id: Mapped[int | None] = mapped_column(ForeignKey("missed_callbacks.id"))
