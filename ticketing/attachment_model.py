"""Files attached to a case (issue 14: a citizen's photo from the web portal; later a fax's PDF).

Its own module because models.py is full; models.py imports it at its end. The bytes are kept in
the store itself, beside the case: every API process reads them, the backup takes them with the
database, and a case's attachments go where the case goes. The rules (types, sizes, who reads
them) are in ticketing/attachments.py.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, deferred, mapped_column

from ticketing.models import Base


class CaseAttachment(Base):
    """One file of a case: what it is (`source`: web_photo, ...), its media type as its first bytes
    say (never as the sender claimed), size and SHA-256, and the bytes (loaded only when asked)."""

    __tablename__ = "case_attachments"
    __table_args__ = (Index("ix_case_attachments_case", "case_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    source: Mapped[str] = mapped_column(String(32))
    media_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))


__all__ = ["CaseAttachment"]
