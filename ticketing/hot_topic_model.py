"""Stored parts of hot topics (R7.6, issue 13 item 6): each case's segmented terms (kept so a
month of cases is not segmented again on every look) and the public answers the back office
publishes for a topic. Its own module because models.py is at its size limit; models.py imports
it at its end. The rules are in `ticketing.hot_topics`.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.models import Base


class CaseTerms(Base):
    """The terms of a case's title and description, as `ticketing.hot_topics` segmented them;
    `source` fingerprints the text and the dictionary they came from (changed: made again)."""

    __tablename__ = "case_terms"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(String(32))
    terms: Mapped[str] = mapped_column(Text)  # space-separated


class HotTopicAnswer(Base):
    """A public answer to a hot topic (category, term, place), shown on /public until withdrawn or
    replaced by a newer answer to the same topic."""

    __tablename__ = "hot_topic_answers"
    __table_args__ = (Index("ix_hot_topic_answers_topic", "category_code", "term", "place"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    category_code: Mapped[str] = mapped_column(String(64))
    term: Mapped[str] = mapped_column(String(64))
    place: Mapped[str] = mapped_column(String(64), default="")
    title: Mapped[str] = mapped_column(String(200))
    answer: Mapped[str] = mapped_column(Text)
    cases: Mapped[int] = mapped_column(Integer)  # requests on the topic in the period it was published for
    since: Mapped[datetime]
    until: Mapped[datetime]
    published_at: Mapped[datetime]
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    withdrawn_at: Mapped[datetime | None]
    withdrawn_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
