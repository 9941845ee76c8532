"""The stored report submission (呈批, Article 5 (二) 6): a clerk's report back put to the unit's
leader, and the leader's decision.

Its own module because models.py is at the size limit; models.py imports it at its end, as it does
`inquiry_model`. The rules are in `ticketing.workflow.approval`.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ticketing.enums import ApprovalState, Satisfaction
from ticketing.models import Base, User, WorkOrder, _enum


class ReportSubmission(Base):
    """Article 5 (二) 6 (呈批): a clerk's report back put to the unit's leader, and the decision."""

    __tablename__ = "report_submissions"
    __table_args__ = (Index("ix_report_submissions_state_wo", "state", "work_order_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    work_order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id"))
    answer: Mapped[str] = mapped_column(Text)
    satisfaction: Mapped[Satisfaction | None] = mapped_column(_enum(Satisfaction))
    state: Mapped[ApprovalState] = mapped_column(_enum(ApprovalState, 16))
    submitted_at: Mapped[datetime]
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(Text)  # why it was sent back

    work_order: Mapped[WorkOrder] = relationship(back_populates="submissions")
    submitted_by: Mapped[User | None] = relationship(foreign_keys=[submitted_by_id])
