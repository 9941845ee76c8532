"""The stored knowledge base (R5.3, R7.2): entries, their revisions (version history), the cases
answered with them, and operators' flags.

Its own module because models.py is at the size limit; models.py imports it at its end (and
re-exports KnowledgeEntry, which it used to define). The rules are in `ticketing.knowledge`, the
search in `ticketing.knowledge_search`.
"""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ticketing.models import Base, MemberUnit, User, _enum


class KnowledgeState(StrEnum):
    """The life of an entry. "Due for review" is not a state: a published entry past its
    review_due_at (ticketing.knowledge.due_for_review)."""

    DRAFT = "draft"            # written by its unit, never published
    SUBMITTED = "submitted"    # put to the reviewer
    PUBLISHED = "published"    # read by operators and the public FAQ
    EXPIRED = "expired"        # past valid_until
    WITHDRAWN = "withdrawn"    # taken out by its unit or the reviewer


class RevisionState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    PUBLISHED = "published"
    RETURNED = "returned"      # sent back by the reviewer with a note
    SUPERSEDED = "superseded"  # a later revision replaced it before publication


class KnowledgeEntry(Base):
    """R5.3 / R7.2: a normalized answer (规范答案) kept by its unit. The row holds the PUBLISHED
    content (what operators search); a revision in progress lives in KnowledgeRevision until the
    reviewer publishes it. An entry never published holds its first draft."""

    __tablename__ = "knowledge_entries"
    __table_args__ = (Index("ix_knowledge_entries_state_unit", "state", "unit_id"),
                      Index("ux_knowledge_entries_seed_key", "seed_key", unique=True))

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("member_units.id"))
    category_code: Mapped[str | None] = mapped_column(String(64))  # the main category
    question: Mapped[str] = mapped_column(String(500))
    answer: Mapped[str] = mapped_column(Text)
    keywords: Mapped[str] = mapped_column(String(500), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # = state is published (older readers)
    updated_at: Mapped[datetime]
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # 0015
    state: Mapped[KnowledgeState] = mapped_column(_enum(KnowledgeState, 16), default=KnowledgeState.DRAFT)
    variants: Mapped[list[Any]] = mapped_column(default=list)        # other ways to ask
    categories: Mapped[list[Any]] = mapped_column(default=list)      # further category codes
    legal_basis: Mapped[str] = mapped_column(Text, default="")
    source_links: Mapped[list[Any]] = mapped_column(default=list)
    valid_from: Mapped[datetime | None]
    valid_until: Mapped[datetime | None]
    review_interval_days: Mapped[int] = mapped_column(Integer, default=365)
    review_due_at: Mapped[datetime | None]
    review_urged_for: Mapped[datetime | None]  # the review_due_at the scheduler last urged (once per date)
    version: Mapped[int] = mapped_column(Integer, default=1)         # the revision the row holds
    published_at: Mapped[datetime | None]
    seed_key: Mapped[str | None] = mapped_column(String(100))  # config/knowledge entries
    search_terms: Mapped[str] = mapped_column(Text, default="")      # ticketing.knowledge_text
    search_body: Mapped[str] = mapped_column(Text, default="")

    unit: Mapped[MemberUnit] = relationship()
    revisions: Mapped[list[KnowledgeRevision]] = relationship(back_populates="entry",
                                                              order_by="KnowledgeRevision.number")


class KnowledgeRevision(Base):
    """One saved version of an entry: what it said, who wrote it, and what the reviewer decided."""

    __tablename__ = "knowledge_revisions"
    __table_args__ = (UniqueConstraint("entry_id", "number"), Index("ix_knowledge_revisions_state", "state"))

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("knowledge_entries.id"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[RevisionState] = mapped_column(_enum(RevisionState, 16))
    content: Mapped[dict[str, Any]]  # question, variants, answer, keywords, categories, legal basis ...
    changed: Mapped[list[Any]] = mapped_column(default=list)  # field names that differ from the previous
    written_at: Mapped[datetime]
    written_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    submitted_at: Mapped[datetime | None]
    reviewed_at: Mapped[datetime | None]
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(Text, default="")  # the reviewer's note when returned

    entry: Mapped[KnowledgeEntry] = relationship(back_populates="revisions")
    written_by: Mapped[User | None] = relationship(foreign_keys=[written_by_id])
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id])


class KnowledgeUse(Base):
    """R7.2: a case answered directly from an entry, and which version the operator read."""

    __tablename__ = "knowledge_uses"
    __table_args__ = (Index("ix_knowledge_uses_entry", "entry_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("knowledge_entries.id"))
    version: Mapped[int] = mapped_column(Integer)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    at: Mapped[datetime]
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class KnowledgeFlag(Base):
    """An operator's report that an entry is wrong or outdated: a task for the entry's unit."""

    __tablename__ = "knowledge_flags"
    __table_args__ = (Index("ix_knowledge_flags_unit_open", "unit_id", "resolved_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("knowledge_entries.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("member_units.id"))
    version: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(16))  # wrong | outdated
    note: Mapped[str] = mapped_column(Text, default="")
    flagged_at: Mapped[datetime]
    flagged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolution: Mapped[str] = mapped_column(Text, default="")

    entry: Mapped[KnowledgeEntry] = relationship()


class KnowledgeTerm(Base):
    """How many entries' index holds a term (ticketing.knowledge_search): the search retrieves by a
    question's rarer terms and weighs each by it. The row TOTAL counts the entries indexed."""

    __tablename__ = "knowledge_terms"

    term: Mapped[str] = mapped_column(String(100), primary_key=True)
    entries: Mapped[int] = mapped_column(Integer, default=0)
