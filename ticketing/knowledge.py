"""The knowledge base's rules (R5.3, R7.2; 国办发〔2020〕53号 "权威准确、标准统一、实时更新、共建共享").

An entry is written by its unit (draft), submitted, and published by the reviewer (the back office;
the regulation's Article 5 (四) gives the compiling of the base to the legal office, which has no
role in this install yet: `may_review` is the one place to widen). Publishing copies the revision
into the entry row, which is what operators and the public read; a later revision waits beside it
until published. A published entry is due for review `review_interval_days` after publication,
expires at `valid_until`, and may be withdrawn. Every change is a revision (who, when, which fields)
and an audit event (A1).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ticketing import audit
from ticketing.audit import Actor
from ticketing.enums import Role
from ticketing.errors import DomainError, Forbidden, InvalidInput
from ticketing.figures.cases import CONTENT_SATISFIED, RATED
from ticketing.knowledge_model import (
    KnowledgeEntry,
    KnowledgeFlag,
    KnowledgeRevision,
    KnowledgeState,
    KnowledgeUse,
    RevisionState,
)
from ticketing.knowledge_search import set_index
from ticketing.knowledge_text import Segmenter
from ticketing.models import Case, MemberUnit
from ticketing.privacy import find_personal_data

CONTENT_FIELDS = ("question", "variants", "answer", "keywords", "category_code", "categories", "legal_basis",
                  "source_links", "valid_from", "valid_until", "review_interval_days")
FLAG_REASONS = ("wrong", "outdated")
PERSONAL_KINDS = {"id_number", "email"}  # office phones and service-hall addresses belong in answers
OPEN_REVISION = (RevisionState.DRAFT, RevisionState.SUBMITTED, RevisionState.RETURNED)
Notify = Callable[..., Any]  # Workflow.notify_unit_staff(unit_id, kind, message)


# ---- who may do what --------------------------------------------------------------------------
def may_write(actor: Actor, unit_id: int) -> bool:
    """R5.3: a unit keeps its own entries, nobody else's."""
    return actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE} and actor.unit_id == unit_id


def may_review(actor: Actor) -> bool:
    """Only the reviewer publishes (the back office; see the module's note on the legal office)."""
    return actor.role == Role.BACK_OFFICE


def may_read_drafts(actor: Actor, unit_id: int) -> bool:
    return may_write(actor, unit_id) or may_review(actor) or actor.role == Role.SUPERVISOR


def _require_writer(actor: Actor, unit_id: int) -> None:
    if not may_write(actor, unit_id):
        raise Forbidden("R5.3", "knowledge-base entries are kept by their own unit")


def _require_reviewer(actor: Actor) -> None:
    if not may_review(actor):
        raise Forbidden("R7.2", "only the knowledge base's reviewer (the back office) publishes or returns entries")


# ---- content ----------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _parse(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def clean_content(content: dict[str, Any]) -> dict[str, Any]:
    """The content fields, checked; datetimes as ISO text (revisions keep them as JSON)."""
    out = {k: content.get(k) for k in CONTENT_FIELDS}
    out["question"] = (out["question"] or "").strip()
    out["answer"] = (out["answer"] or "").strip()
    if not out["question"] or not out["answer"]:
        raise InvalidInput("R7.2", "an entry needs a question and its normalized answer (规范答案)")
    out["variants"] = [v.strip() for v in out["variants"] or [] if v and v.strip()]
    out["categories"] = list(dict.fromkeys(out["categories"] or []))
    out["source_links"] = [s.strip() for s in out["source_links"] or [] if s and s.strip()]
    out["keywords"] = out["keywords"] or ""
    out["legal_basis"] = out["legal_basis"] or ""
    out["review_interval_days"] = int(out["review_interval_days"] or 365)
    if out["review_interval_days"] < 1:
        raise InvalidInput("R7.2", "the review interval is at least one day")
    start, end = _parse(out["valid_from"]), _parse(out["valid_until"])
    if start and end and end <= start:
        raise InvalidInput("R7.2", "valid_until must come after valid_from")
    out["valid_from"], out["valid_until"] = _plain(start), _plain(end)
    return out


def content_of(entry: KnowledgeEntry) -> dict[str, Any]:
    return {k: _plain(getattr(entry, k)) for k in CONTENT_FIELDS}


def _apply(session: Session, entry: KnowledgeEntry, content: dict[str, Any], segmenter: Segmenter) -> None:
    for key in CONTENT_FIELDS:
        value = content[key]
        setattr(entry, key, _parse(value) if key in ("valid_from", "valid_until") else value)
    reindex(session, entry, segmenter)


def reindex(session: Session, entry: KnowledgeEntry, segmenter: Segmenter) -> None:
    set_index(session, entry, *segmenter.index_fields(entry.question, entry.variants, entry.keywords, entry.answer))


def latest_revision(entry: KnowledgeEntry) -> KnowledgeRevision | None:
    return entry.revisions[-1] if entry.revisions else None


def pending_revision(entry: KnowledgeEntry) -> KnowledgeRevision | None:
    """The revision not yet published (draft, submitted or returned), if any."""
    last = latest_revision(entry)
    return last if last is not None and last.state in OPEN_REVISION else None


def _log(session: Session, actor: Actor, action: str, entry: KnowledgeEntry, now: datetime, **data: Any) -> None:
    audit.record(session, actor, action, at=now,
                 data={"entry": entry.id, "unit": entry.unit.code if entry.unit else None, **data})


# ---- the life of an entry ---------------------------------------------------------------------
def create_entry(session: Session, actor: Actor, unit: MemberUnit, content: dict[str, Any], *, now: datetime,
                 segmenter: Segmenter) -> KnowledgeEntry:
    _require_writer(actor, unit.id)
    content = clean_content(content)
    entry = KnowledgeEntry(unit_id=unit.id, unit=unit, state=KnowledgeState.DRAFT, active=False, version=1,
                           updated_at=now, updated_by_id=actor.user_id)
    _apply(session, entry, content, segmenter)
    session.add(entry)
    session.flush()
    session.add(KnowledgeRevision(entry=entry, number=1, state=RevisionState.DRAFT, content=content,
                                  changed=sorted(CONTENT_FIELDS), written_at=now, written_by_id=actor.user_id, note=""))
    _log(session, actor, "knowledge_add", entry, now, version=1)
    return entry


def revise(session: Session, actor: Actor, entry: KnowledgeEntry, content: dict[str, Any], *, now: datetime,
           segmenter: Segmenter) -> KnowledgeRevision:
    """A new revision. A published entry keeps answering with its published text until the
    reviewer publishes this one; an entry never published shows the new text at once (as a draft)."""
    _require_writer(actor, entry.unit_id)
    content = clean_content(content)
    last = latest_revision(entry)
    before = last.content if last is not None else content_of(entry)
    changed = sorted(k for k in CONTENT_FIELDS if before.get(k) != content[k])
    if not changed:
        raise InvalidInput("R7.2", "nothing changed")
    if last is not None and last.state in (RevisionState.DRAFT, RevisionState.SUBMITTED):
        last.state = RevisionState.SUPERSEDED  # a returned one stays returned, with its note
    number = (last.number if last else 0) + 1
    revision = KnowledgeRevision(entry=entry, number=number, state=RevisionState.DRAFT, content=content,
                                 changed=changed, written_at=now, written_by_id=actor.user_id, note="")
    session.add(revision)
    if entry.state in (KnowledgeState.DRAFT, KnowledgeState.SUBMITTED) and entry.published_at is None:
        _apply(session, entry, content, segmenter)
        entry.state, entry.version = KnowledgeState.DRAFT, number
    entry.updated_at, entry.updated_by_id = now, actor.user_id
    _log(session, actor, "knowledge_revise", entry, now, version=number, changed=changed)
    return revision


def submit(session: Session, actor: Actor, entry: KnowledgeEntry, *, now: datetime) -> KnowledgeRevision:
    _require_writer(actor, entry.unit_id)
    revision = pending_revision(entry)
    if revision is None or revision.state == RevisionState.SUBMITTED:
        raise DomainError("R7.2", "nothing to submit: write or revise the entry first"
                          if revision is None else "already submitted; waiting for the reviewer")
    revision.state, revision.submitted_at, revision.note = RevisionState.SUBMITTED, now, ""
    if entry.state == KnowledgeState.DRAFT:
        entry.state = KnowledgeState.SUBMITTED
    _log(session, actor, "knowledge_submit", entry, now, version=revision.number)
    return revision


def review(session: Session, actor: Actor, entry: KnowledgeEntry, *, publish: bool, note: str, now: datetime,
           segmenter: Segmenter) -> KnowledgeRevision:
    """The reviewer publishes the submitted revision, or returns it to the unit with a note."""
    _require_reviewer(actor)
    revision = pending_revision(entry)
    if revision is None or revision.state != RevisionState.SUBMITTED:
        raise DomainError("R7.2", "no submitted revision of this entry to review")
    revision.reviewed_at, revision.reviewed_by_id, revision.note = now, actor.user_id, note.strip()
    if not publish:
        if not revision.note:
            raise InvalidInput("R7.2", "say why the entry goes back to its unit")
        revision.state = RevisionState.RETURNED
        if entry.state == KnowledgeState.SUBMITTED:
            entry.state = KnowledgeState.DRAFT
        _log(session, actor, "knowledge_return", entry, now, version=revision.number, note=revision.note)
        return revision
    personal = {kind for _, _, kind in find_personal_data(
        " ".join([revision.content["question"], *revision.content["variants"], revision.content["answer"]]))}
    if personal & PERSONAL_KINDS:  # the FAQ is public (R7.6): no citizen's ID number or e-mail in it
        raise InvalidInput("R7.6", "the entry holds personal data (" + ", ".join(sorted(personal & PERSONAL_KINDS))
                           + "); return it to its unit to take that out")
    for older in entry.revisions:
        if older.state == RevisionState.PUBLISHED:
            older.state = RevisionState.SUPERSEDED
    revision.state = RevisionState.PUBLISHED
    _apply(session, entry, revision.content, segmenter)
    entry.version, entry.state, entry.active = revision.number, KnowledgeState.PUBLISHED, True
    entry.published_at, entry.updated_at, entry.updated_by_id = now, now, actor.user_id
    entry.review_due_at = now + timedelta(days=entry.review_interval_days)
    _log(session, actor, "knowledge_publish", entry, now, version=revision.number)
    return revision


def withdraw(session: Session, actor: Actor, entry: KnowledgeEntry, *, note: str, now: datetime) -> None:
    """Its unit or the reviewer takes the entry out of use."""
    if not (may_write(actor, entry.unit_id) or may_review(actor)):
        raise Forbidden("R5.3", "only the entry's unit or the reviewer may withdraw it")
    if entry.state == KnowledgeState.WITHDRAWN:
        raise DomainError("R7.2", "the entry is already withdrawn")
    entry.state, entry.active, entry.updated_at, entry.updated_by_id = KnowledgeState.WITHDRAWN, False, now, actor.user_id
    _log(session, actor, "knowledge_withdraw", entry, now, version=entry.version, note=note.strip())


def expire_past_validity(session: Session, now: datetime) -> list[KnowledgeEntry]:
    """Published entries whose valid_until has passed become expired (the scheduler or any reader)."""
    rows = list(session.execute(select(KnowledgeEntry).where(
        KnowledgeEntry.state == KnowledgeState.PUBLISHED, KnowledgeEntry.valid_until <= now)).scalars())
    for entry in rows:
        entry.state, entry.active = KnowledgeState.EXPIRED, False
        _log(session, audit.SYSTEM, "knowledge_expire", entry, now, version=entry.version)
    return rows


def due_for_review(session: Session, now: datetime, unit_id: int | None = None) -> list[KnowledgeEntry]:
    """Published entries past their review date (R9.1-style: listed to their unit, urged)."""
    stmt = select(KnowledgeEntry).where(KnowledgeEntry.state == KnowledgeState.PUBLISHED,
                                        KnowledgeEntry.review_due_at <= now)
    if unit_id is not None:
        stmt = stmt.where(KnowledgeEntry.unit_id == unit_id)
    return list(session.execute(stmt.order_by(KnowledgeEntry.review_due_at, KnowledgeEntry.id)).scalars())


def urge_review(session: Session, actor: Actor, entry: KnowledgeEntry, *, now: datetime, notify: Notify) -> None:
    """催办 for an entry past its review date, like a late work order's (R7.7)."""
    if actor.role not in {Role.BACK_OFFICE, Role.FRONT_DESK, Role.SYSTEM}:
        raise Forbidden("R7.7", "the center urges units")  # the scheduler (system) too
    if entry.state != KnowledgeState.PUBLISHED or entry.review_due_at is None or entry.review_due_at > now:
        raise DomainError("R7.7", "the entry is not past its review date")
    notify(entry.unit_id, "knowledge_review_urge",
           f"知识库条目 #{entry.id}「{entry.question[:40]}」已超过复核日期，请尽快复核更新并提交审核。")
    entry.review_urged_for = entry.review_due_at
    _log(session, actor, "knowledge_urge", entry, now, version=entry.version)


def sweep(session: Session, actor: Actor, *, now: datetime, notify: Notify) -> dict[str, int]:
    """The scheduler's pass (callback/deadlines.py): entries past valid_until expire; each entry
    past its review date is urged once for that date (R9.1-style, like a late work order)."""
    expired = expire_past_validity(session, now)
    urged = 0
    for entry in due_for_review(session, now):
        if entry.review_urged_for != entry.review_due_at:
            urge_review(session, actor, entry, now=now, notify=notify)
            urged += 1
    return {"expired": len(expired), "urged": urged}


# ---- used and measured ------------------------------------------------------------------------
def record_use(session: Session, actor: Actor, entry_id: int, case: Case, *, now: datetime) -> KnowledgeUse:
    """R7.2: the case was answered from this entry; the version the operator read is kept."""
    entry = session.get(KnowledgeEntry, entry_id)
    if entry is None or entry.state != KnowledgeState.PUBLISHED:
        raise InvalidInput("R7.2", f"knowledge entry {entry_id} is not a published entry")
    use = KnowledgeUse(entry_id=entry.id, version=entry.version, case_id=case.id, at=now, user_id=actor.user_id)
    session.add(use)
    return use


def flag(session: Session, actor: Actor, entry: KnowledgeEntry, *, reason: str, note: str, now: datetime,
         notify: Notify) -> KnowledgeFlag:
    """An operator reports an entry as wrong or outdated: a task for its unit."""
    if actor.role not in {Role.FRONT_DESK, Role.BACK_OFFICE}:
        raise Forbidden("R5.1", "operators and the back office flag entries")
    if reason not in FLAG_REASONS:
        raise InvalidInput("R7.2", f"reason is one of {', '.join(FLAG_REASONS)}")
    item = KnowledgeFlag(entry_id=entry.id, unit_id=entry.unit_id, version=entry.version, reason=reason,
                         note=note.strip(), flagged_at=now, flagged_by_id=actor.user_id, resolution="")
    session.add(item)
    session.flush()
    words = {"wrong": "有误", "outdated": "已过时"}[reason]
    notify(entry.unit_id, "knowledge_flag",
           f"话务员反映知识库条目 #{entry.id}「{entry.question[:40]}」{words}：{note.strip()[:200]}")
    _log(session, actor, "knowledge_flag", entry, now, version=entry.version, flag=item.id, reason=reason)
    return item


def resolve_flag(session: Session, actor: Actor, item: KnowledgeFlag, *, resolution: str, now: datetime) -> None:
    _require_writer(actor, item.unit_id)
    if item.resolved_at is not None:
        raise DomainError("R7.2", "the flag is already resolved")
    if not resolution.strip():
        raise InvalidInput("R7.2", "say what was done about the flag")
    item.resolved_at, item.resolved_by_id, item.resolution = now, actor.user_id, resolution.strip()
    _log(session, actor, "knowledge_flag_resolve", item.entry, now, flag=item.id)


def usage(session: Session, since: datetime | None = None) -> list[dict[str, Any]]:
    """Entries by use, with the satisfaction of the cases answered from them (满意率 as in
    GUIDANCE: 满意 + 基本满意 over the rated)."""
    rated = case((Case.satisfaction.in_(RATED), 1), else_=0)
    good = case((Case.satisfaction.in_(CONTENT_SATISFIED), 1), else_=0)
    stmt = (select(KnowledgeUse.entry_id, func.count(KnowledgeUse.id), func.sum(rated), func.sum(good))
            .join(Case, Case.id == KnowledgeUse.case_id).group_by(KnowledgeUse.entry_id))
    if since is not None:
        stmt = stmt.where(KnowledgeUse.at >= since)
    out = []
    for entry_id, uses, rated, satisfied in session.execute(stmt):
        rated, satisfied = int(rated or 0), int(satisfied or 0)
        out.append({"entry_id": entry_id, "uses": uses, "rated": rated, "satisfied": satisfied,
                    "satisfaction_rate": round(satisfied / rated, 4) if rated else None})
    out.sort(key=lambda r: (-r["uses"], -(r["satisfaction_rate"] or 0), r["entry_id"]))
    return out
