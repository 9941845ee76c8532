"""The stored inquiry (调查, R6.1): supervision asks a unit to explain a case or its work, the unit
explains, supervision records its findings and the accountability decision (过错问责, Article 4).

Its own module because models.py is near the size limit; models.py imports it at its end, so the
table is in `Base.metadata` whichever of the two is imported first. The rules are in
`ticketing.workflow.inquiries`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ticketing.enums import AccountabilityDecision, InquiryReason, InquiryStatus
from ticketing.models import Base, Case, MemberUnit, WorkOrder, _enum


class Inquiry(Base):
    """One inquiry into a unit, about one of its cases (and work order) or about the unit as such."""

    __tablename__ = "inquiries"
    __table_args__ = (
        Index("ix_inquiries_unit_status", "unit_id", "status"),
        Index("ix_inquiries_status_due", "status", "explanation_due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("member_units.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    work_order_id: Mapped[int | None] = mapped_column(ForeignKey("work_orders.id"))
    reason: Mapped[InquiryReason] = mapped_column(_enum(InquiryReason))
    description: Mapped[str] = mapped_column(Text)  # what supervision asks the unit to explain
    status: Mapped[InquiryStatus] = mapped_column(_enum(InquiryStatus))

    opened_at: Mapped[datetime]
    opened_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    explanation_due_at: Mapped[datetime]
    explanation: Mapped[str | None] = mapped_column(Text)
    explained_at: Mapped[datetime | None]
    explained_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    explanation_met: Mapped[bool | None] = mapped_column(Boolean)

    findings: Mapped[str | None] = mapped_column(Text)
    decision: Mapped[AccountabilityDecision | None] = mapped_column(_enum(AccountabilityDecision))
    decided_at: Mapped[datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    # urged like a work order (R7.7): once per threshold, the keys kept here
    urge_count: Mapped[int] = mapped_column(Integer, default=0)
    last_urged_at: Mapped[datetime | None]
    urged_thresholds: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # T1: deadlines counted over a year with no published arrangement (ticketing.deadlines)
    provisional_deadlines: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    version: Mapped[int] = mapped_column(Integer, nullable=False)
    __mapper_args__ = {"version_id_col": version}  # two supervisors cannot both decide

    unit: Mapped[MemberUnit] = relationship()
    case: Mapped[Case | None] = relationship()
    work_order: Mapped[WorkOrder | None] = relationship()
