"""Attachments of a case (issue 14): what may be attached and how large, checked on the bytes
themselves; who may read one (whoever may read the case's content: ticketing/access.py). The
table is ticketing/attachment_model.py.

A file's type is what its first bytes say (JPEG, PNG, WebP, PDF), never the name or type a sender
gave: a page that shows a "photo" must never receive a script or an HTML file.
"""
from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ticketing import audit
from ticketing.attachment_model import CaseAttachment
from ticketing.audit import Actor
from ticketing.errors import InvalidInput, NotFound
from ticketing.models import Case

PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
TYPE_NAMES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WebP", "application/pdf": "PDF"}


def media_type_of(data: bytes) -> str | None:
    """The media type the bytes' signature names, or None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def check(data: bytes, *, allowed: frozenset[str], max_bytes: int, rule: str = "R2.2") -> str:
    """The file's media type, or InvalidInput saying what is wrong (in the citizen's words)."""
    if not data:
        raise InvalidInput(rule, "附件是空文件")
    if len(data) > max_bytes:
        raise InvalidInput(rule, f"附件不能超过 {max_bytes // 1024} KB（收到 {(len(data) + 1023) // 1024} KB）")
    media_type = media_type_of(data)
    if media_type not in allowed:
        names = "、".join(sorted(TYPE_NAMES[t] for t in allowed))
        raise InvalidInput(rule, f"附件只能是 {names} 格式")
    return media_type


def attach(session: Session, actor: Actor, case: Case, data: bytes, *, source: str, allowed: frozenset[str],
           max_bytes: int, now: datetime) -> CaseAttachment:
    """Check and keep a file of `case`; A1: an audit event with its type, size and hash (not its bytes)."""
    media_type = check(data, allowed=allowed, max_bytes=max_bytes)
    row = CaseAttachment(case_id=case.id, source=source, media_type=media_type, size=len(data),
                         sha256=hashlib.sha256(data).hexdigest(), created_at=now, content=data)
    session.add(row)
    session.flush()
    audit.record(session, actor, "attach", at=now, case_id=case.id, data={
        "attachment_id": row.id, "source": source, "media_type": media_type, "size": row.size, "sha256": row.sha256})
    return row


def of_case(session: Session, case_id: int) -> list[CaseAttachment]:
    """A case's attachments, oldest first (their bytes not loaded)."""
    return list(session.execute(select(CaseAttachment).where(CaseAttachment.case_id == case_id)
                                .order_by(CaseAttachment.id)).scalars())


def one(session: Session, case_id: int, attachment_id: int) -> CaseAttachment:
    row = session.get(CaseAttachment, attachment_id)
    if row is None or row.case_id != case_id:
        raise NotFound("attachment", attachment_id)
    return row


__all__ = ["PHOTO_TYPES", "attach", "check", "media_type_of", "of_case", "one"]
