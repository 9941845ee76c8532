"""The stored merge of a repeated request (重复诉求并单, 国办函〔2025〕66号): a duplicate case closed
into the open case it repeats. Its own module because models.py is at its size limit; models.py
imports it at its end. The rules are in `ticketing.repeats` (what repeats what) and
`ticketing.workflow.merging` (who merges, when, and what it does).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.models import Base


class CaseMerge(Base):
    """One duplicate case merged into its surviving case; a case is merged at most once."""

    __tablename__ = "case_merges"
    __table_args__ = (Index("ix_case_merges_surviving", "surviving_case_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    duplicate_case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), unique=True)
    surviving_case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    ground: Mapped[str] = mapped_column(String(20))  # same_caller | same_place | judged (back office's call)
    merged_at: Mapped[datetime]
    merged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
