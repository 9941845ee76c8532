"""The knowledge base (R5.3, R7.2): units write and revise entries, the back office reviews and
publishes them, operators search while they type and flag what is wrong; the public reads the FAQ.
The rules are in ticketing.knowledge, the one search in ticketing.knowledge_search."""
from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import AwareDatetime, Field, StringConstraints
from sqlalchemy import select

from callcenter.api.deps import ActorDep, DomainDep, IdPath, SessionDep, WorkflowDep, commit
from callcenter.api.schemas import Code, Out, RequiredShort, RequiredText, ShortText, Storable, Strict, Text
from ticketing import knowledge as kb
from ticketing.enums import Role
from ticketing.errors import Forbidden, NotFound
from ticketing.knowledge_model import KnowledgeEntry, KnowledgeFlag, KnowledgeRevision, RevisionState
from ticketing.knowledge_search import search, searchable
from ticketing.knowledge_text import Segmenter, segmenter_for
from ticketing.models import MemberUnit

router = APIRouter(tags=["knowledge"])
Link = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), Storable]


class KnowledgeIn(Strict):
    question: RequiredShort
    answer: RequiredText
    variants: list[RequiredShort] = Field(default_factory=list, max_length=30)
    keywords: ShortText = ""
    category_code: Code | None = None
    categories: list[Code] = Field(default_factory=list, max_length=10)
    legal_basis: Text = ""
    source_links: list[Link] = Field(default_factory=list, max_length=10)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    review_interval_days: int = Field(default=365, ge=1, le=3650)


class ReviewIn(Strict):
    decision: Literal["publish", "return"]
    note: Text = ""


class NoteIn(Strict):
    note: Text = ""


class FlagIn(Strict):
    reason: Literal["wrong", "outdated"]
    note: RequiredText


class ResolveIn(Strict):
    resolution: RequiredText


class RevisionOut(Out):
    number: int
    state: str
    content: dict
    changed: list[str]
    written_at: datetime
    written_by: str | None
    submitted_at: datetime | None
    reviewed_at: datetime | None
    reviewed_by: str | None
    note: str


class KnowledgeOut(Out):
    id: int
    unit_code: str
    unit_name: str
    state: str
    version: int
    question: str
    variants: list[str]
    answer: str
    keywords: str
    category_code: str | None
    categories: list[str]
    legal_basis: str
    source_links: list[str]
    valid_from: datetime | None
    valid_until: datetime | None
    review_interval_days: int
    review_due_at: datetime | None
    due_for_review: bool
    published_at: datetime | None
    updated_at: datetime
    score: float | None = None
    pending: RevisionOut | None = None  # a revision not yet published (writers and the reviewer only)
    open_flags: int | None = None


class KnowledgeDetailOut(KnowledgeOut):
    history: list[RevisionOut]


class FlagOut(Out):
    id: int
    entry_id: int
    question: str
    version: int
    reason: str
    note: str
    flagged_at: datetime
    resolved_at: datetime | None
    resolution: str


class UsageOut(Out):
    entry_id: int
    question: str
    unit_code: str
    uses: int
    rated: int
    satisfied: int
    satisfaction_rate: float | None


def get_segmenter(request: Request, domain: DomainDep) -> Segmenter:
    return segmenter_for(domain.config_dir or request.app.state.settings.config_dir)


def _revision_out(r: KnowledgeRevision) -> RevisionOut:
    return RevisionOut(number=r.number, state=r.state, content=r.content, changed=list(r.changed),
                       written_at=r.written_at, written_by=r.written_by.display_name if r.written_by else None,
                       submitted_at=r.submitted_at, reviewed_at=r.reviewed_at,
                       reviewed_by=r.reviewed_by.display_name if r.reviewed_by else None, note=r.note)


def _out(e: KnowledgeEntry, actor, now: datetime, score: float | None = None, cls=KnowledgeOut, **extra):
    pending = kb.pending_revision(e) if kb.may_read_drafts(actor, e.unit_id) else None
    return cls(id=e.id, unit_code=e.unit.code, unit_name=e.unit.name, state=e.state, version=e.version,
               question=e.question, variants=list(e.variants or []), answer=e.answer, keywords=e.keywords,
               category_code=e.category_code, categories=list(e.categories or []), legal_basis=e.legal_basis,
               source_links=list(e.source_links or []), valid_from=e.valid_from, valid_until=e.valid_until,
               review_interval_days=e.review_interval_days, review_due_at=e.review_due_at,
               due_for_review=bool(e.state == "published" and e.review_due_at and e.review_due_at <= now),
               published_at=e.published_at, updated_at=e.updated_at, score=score,
               pending=_revision_out(pending) if pending else None, **extra)


def _unit(session, code: str) -> MemberUnit:
    unit = session.execute(select(MemberUnit).where(MemberUnit.code == code)).scalar_one_or_none()
    if unit is None:
        raise NotFound("member unit", code)
    return unit


def _entry(session, entry_id: int, actor, now: datetime) -> KnowledgeEntry:
    entry = session.get(KnowledgeEntry, entry_id)
    # a draft is its unit's and the reviewer's business: to anyone else it does not exist
    if entry is None or (entry.published_at is None and not kb.may_read_drafts(actor, entry.unit_id)):
        raise NotFound("knowledge entry", entry_id)
    return entry


@router.get("/knowledge", response_model=list[KnowledgeOut], summary="R7.2: search the published knowledge base")
def search_knowledge(request: Request, actor: ActorDep, session: SessionDep, domain: DomainDep,
                     q: Annotated[str | None, Query(max_length=100)] = None,
                     unit: str | None = None, category: Code | None = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[KnowledgeOut]:
    now = domain.clock()
    unit_id = _unit(session, unit).id if unit else None
    hits = search(session, get_segmenter(request, domain), q, now=now, category=category, unit_id=unit_id, limit=limit)
    return [_out(h.entry, actor, now, h.score) for h in hits]


@router.get("/knowledge/review-queue", response_model=list[KnowledgeOut], summary="Revisions waiting for the reviewer")
def review_queue(actor: ActorDep, session: SessionDep, domain: DomainDep) -> list[KnowledgeOut]:
    if not kb.may_review(actor):
        raise Forbidden("R7.2", "only the reviewer (the back office) sees the review queue")
    rows = session.execute(select(KnowledgeEntry).join(KnowledgeRevision)
                           .where(KnowledgeRevision.state == RevisionState.SUBMITTED)
                           .order_by(KnowledgeRevision.submitted_at, KnowledgeEntry.id)).scalars().unique()
    now = domain.clock()
    return [_out(e, actor, now) for e in rows]


@router.get("/knowledge/due", response_model=list[KnowledgeOut], summary="Published entries past their review date")
def due(actor: ActorDep, session: SessionDep, domain: DomainDep) -> list[KnowledgeOut]:
    now = domain.clock()
    if actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE}:
        rows = kb.due_for_review(session, now, actor.unit_id)
    elif actor.role in {Role.BACK_OFFICE, Role.SUPERVISOR}:
        rows = kb.due_for_review(session, now)
    else:
        raise Forbidden("R5.3", "the units and the back office follow entries due for review")
    return [_out(e, actor, now) for e in rows]


@router.get("/knowledge/usage", response_model=list[UsageOut], summary="R7.2: entries by use and satisfaction")
def usage(actor: ActorDep, session: SessionDep, since: AwareDatetime | None = None) -> list[UsageOut]:
    if actor.role not in {Role.BACK_OFFICE, Role.SUPERVISOR, Role.FRONT_DESK}:
        raise Forbidden("R5.2", "the center and supervision read the knowledge base's use")
    rows = kb.usage(session, since)
    entries = {e.id: e for e in session.execute(select(KnowledgeEntry).where(
        KnowledgeEntry.id.in_([r["entry_id"] for r in rows]))).scalars()}
    return [UsageOut(question=entries[r["entry_id"]].question, unit_code=entries[r["entry_id"]].unit.code, **r)
            for r in rows]


@router.get("/units/{code}/knowledge", response_model=list[KnowledgeOut], summary="R5.3: a unit's own entries, drafts too")
def unit_entries(code: str, actor: ActorDep, session: SessionDep, domain: DomainDep) -> list[KnowledgeOut]:
    unit = _unit(session, code)
    if not kb.may_read_drafts(actor, unit.id):
        raise Forbidden("R5.3", "a unit's drafts are its own and the reviewer's")
    now = domain.clock()
    flags: dict[int, int] = {}
    for f in session.execute(select(KnowledgeFlag).where(KnowledgeFlag.unit_id == unit.id,
                                                         KnowledgeFlag.resolved_at.is_(None))).scalars():
        flags[f.entry_id] = flags.get(f.entry_id, 0) + 1
    rows = session.execute(select(KnowledgeEntry).where(KnowledgeEntry.unit_id == unit.id)
                           .order_by(KnowledgeEntry.id)).scalars()
    return [_out(e, actor, now, open_flags=flags.get(e.id, 0)) for e in rows]


@router.post("/units/{code}/knowledge", response_model=KnowledgeOut, status_code=201, summary="R5.3: write a draft")
def add_entry(code: str, body: KnowledgeIn, request: Request, actor: ActorDep, session: SessionDep,
              domain: DomainDep) -> KnowledgeOut:
    now = domain.clock()
    entry = kb.create_entry(session, actor, _unit(session, code), body.model_dump(), now=now,
                            segmenter=get_segmenter(request, domain))
    commit(session)
    return _out(entry, actor, now)


@router.get("/knowledge/{entry_id}", response_model=KnowledgeDetailOut, summary="An entry with its version history")
def get_entry(entry_id: IdPath, actor: ActorDep, session: SessionDep, domain: DomainDep) -> KnowledgeDetailOut:
    now = domain.clock()
    entry = _entry(session, entry_id, actor, now)
    history = entry.revisions if kb.may_read_drafts(actor, entry.unit_id) else [
        r for r in entry.revisions if r.reviewed_at is not None and r.state != RevisionState.RETURNED]
    return _out(entry, actor, now, cls=KnowledgeDetailOut, history=[_revision_out(r) for r in history])


@router.put("/knowledge/{entry_id}", response_model=KnowledgeOut, summary="R5.3: a new revision (published on review)")
def revise_entry(entry_id: IdPath, body: KnowledgeIn, request: Request, actor: ActorDep, session: SessionDep,
                 domain: DomainDep) -> KnowledgeOut:
    now = domain.clock()
    entry = _entry(session, entry_id, actor, now)
    kb.revise(session, actor, entry, body.model_dump(), now=now, segmenter=get_segmenter(request, domain))
    commit(session)
    return _out(entry, actor, now)


@router.post("/knowledge/{entry_id}/submit", response_model=KnowledgeOut, summary="Put the revision to the reviewer")
def submit_entry(entry_id: IdPath, actor: ActorDep, session: SessionDep, domain: DomainDep) -> KnowledgeOut:
    now = domain.clock()
    entry = _entry(session, entry_id, actor, now)
    kb.submit(session, actor, entry, now=now)
    commit(session)
    return _out(entry, actor, now)


@router.post("/knowledge/{entry_id}/review", response_model=KnowledgeOut, summary="The reviewer publishes or returns")
def review_entry(entry_id: IdPath, body: ReviewIn, request: Request, actor: ActorDep, session: SessionDep,
                 domain: DomainDep) -> KnowledgeOut:
    now = domain.clock()
    entry = _entry(session, entry_id, actor, now)
    kb.review(session, actor, entry, publish=body.decision == "publish", note=body.note, now=now,
              segmenter=get_segmenter(request, domain))
    commit(session)
    return _out(entry, actor, now)


@router.post("/knowledge/{entry_id}/withdraw", response_model=KnowledgeOut, summary="Take an entry out of use")
def withdraw_entry(entry_id: IdPath, body: NoteIn, actor: ActorDep, session: SessionDep, domain: DomainDep) -> KnowledgeOut:
    now = domain.clock()
    entry = _entry(session, entry_id, actor, now)
    kb.withdraw(session, actor, entry, note=body.note, now=now)
    commit(session)
    return _out(entry, actor, now)


@router.delete("/knowledge/{entry_id}", status_code=204, summary="Withdraw (kept for older clients)")
def retire_entry(entry_id: IdPath, actor: ActorDep, session: SessionDep, domain: DomainDep) -> None:
    now = domain.clock()
    kb.withdraw(session, actor, _entry(session, entry_id, actor, now), note="", now=now)
    commit(session)


@router.post("/knowledge/{entry_id}/urge", response_model=KnowledgeOut, summary="R7.7: urge the unit to review it")
def urge_entry(entry_id: IdPath, actor: ActorDep, session: SessionDep, domain: DomainDep, wf: WorkflowDep) -> KnowledgeOut:
    now = domain.clock()
    entry = _entry(session, entry_id, actor, now)
    kb.urge_review(session, actor, entry, now=now, notify=wf.notify_unit_staff)
    commit(session)
    return _out(entry, actor, now)


@router.post("/knowledge/{entry_id}/flags", response_model=FlagOut, status_code=201,
             summary="An operator flags an entry as wrong or outdated: a task for its unit")
def flag_entry(entry_id: IdPath, body: FlagIn, actor: ActorDep, session: SessionDep, domain: DomainDep,
               wf: WorkflowDep) -> FlagOut:
    now = domain.clock()
    entry = _entry(session, entry_id, actor, now)
    item = kb.flag(session, actor, entry, reason=body.reason, note=body.note, now=now, notify=wf.notify_unit_staff)
    commit(session)
    return _flag_out(item)


def _flag_out(f: KnowledgeFlag) -> FlagOut:
    return FlagOut(id=f.id, entry_id=f.entry_id, question=f.entry.question, version=f.version, reason=f.reason,
                   note=f.note, flagged_at=f.flagged_at, resolved_at=f.resolved_at, resolution=f.resolution)


@router.get("/units/{code}/knowledge-flags", response_model=list[FlagOut], summary="Flags on a unit's entries")
def unit_flags(code: str, actor: ActorDep, session: SessionDep, open_only: bool = True) -> list[FlagOut]:
    unit = _unit(session, code)
    if not kb.may_read_drafts(actor, unit.id):
        raise Forbidden("R5.3", "a unit's tasks are its own and the center's")
    stmt = select(KnowledgeFlag).where(KnowledgeFlag.unit_id == unit.id)
    if open_only:
        stmt = stmt.where(KnowledgeFlag.resolved_at.is_(None))
    return [_flag_out(f) for f in session.execute(stmt.order_by(KnowledgeFlag.id)).scalars()]


@router.post("/knowledge-flags/{flag_id}/resolve", response_model=FlagOut, summary="The unit says what it did")
def resolve_flag(flag_id: IdPath, body: ResolveIn, actor: ActorDep, session: SessionDep, domain: DomainDep) -> FlagOut:
    item = session.get(KnowledgeFlag, flag_id)
    if item is None:
        raise NotFound("knowledge flag", flag_id)
    kb.resolve_flag(session, actor, item, resolution=body.resolution, now=domain.clock())
    commit(session)
    return _flag_out(item)


# ---- the public FAQ (R7.6's public pages: no login, published entries only) --------------------
public_router = APIRouter(tags=["public"])


class PublicEntryOut(Out):
    id: int
    question: str
    answer: str
    unit_name: str
    legal_basis: str
    source_links: list[str]
    published_at: datetime | None


def _public(request: Request, session, domain, q: str | None, category: str | None, limit: int) -> list[PublicEntryOut]:
    now = domain.clock()
    if q:
        entries = [h.entry for h in search(session, get_segmenter(request, domain), q, now=now, category=category,
                                           limit=limit)]
    else:  # no question: the most recently published
        stmt = select(KnowledgeEntry).where(searchable(now))
        if category:
            stmt = stmt.where(KnowledgeEntry.category_code == category)
        entries = list(session.execute(stmt.order_by(KnowledgeEntry.published_at.desc(), KnowledgeEntry.id)
                                       .limit(limit)).scalars())
    return [PublicEntryOut(id=e.id, question=e.question, answer=e.answer, unit_name=e.unit.name,
                           legal_basis=e.legal_basis, source_links=list(e.source_links or []),
                           published_at=e.published_at) for e in entries]


@public_router.get("/api/v1/public/knowledge", response_model=list[PublicEntryOut], summary="The public FAQ: published entries")
def public_knowledge(request: Request, session: SessionDep, domain: DomainDep,
                     q: Annotated[str | None, Query(max_length=100)] = None, category: Code | None = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[PublicEntryOut]:
    return _public(request, session, domain, q, category, limit)


# /public's policy (callcenter/api/security.py), and the search form may send to this page itself
FAQ_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; "
           "base-uri 'none'; form-action 'self'")


@public_router.get("/public/faq", response_class=HTMLResponse, include_in_schema=False)
def public_faq(request: Request, session: SessionDep, domain: DomainDep,
               q: Annotated[str | None, Query(max_length=100)] = None) -> HTMLResponse:
    rows = []
    for e in _public(request, session, domain, q, None, 20):
        links = "".join(f"<li>{html.escape(link)}</li>" for link in e.source_links)
        rows.append(f"<article class='faq' data-entry='{e.id}'><h2>{html.escape(e.question)}</h2>"
                    f"<p class='answer'>{html.escape(e.answer)}</p>"
                    f"<p class='meta'>答复单位：{html.escape(e.unit_name)}"
                    + (f" · 依据：{html.escape(e.legal_basis)}" if e.legal_basis else "") + "</p>"
                    + (f"<ul class='sources'>{links}</ul>" if links else "") + "</article>")
    body = "\n".join(rows) or "<p class='empty'>没有找到相关问题，欢迎拨打12345咨询。</p>"
    asked = html.escape(q or "", quote=True)
    return HTMLResponse(f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>12345热线 常见问题</title>
<style>body{{font-family:sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}}
h1{{color:#b00}}article{{border-bottom:1px solid #ddd;padding:.5rem 0}}.meta{{color:#666;font-size:.9rem}}</style>
</head><body><h1>12345政府公共服务热线 · 常见问题</h1>
<form method="get" action="/public/faq"><input name="q" value="{asked}" maxlength="100" placeholder="输入您的问题">
<button type="submit">搜索</button></form>{body}
<p class="meta"><a href="/public">办理结果公开</a></p></body></html>""", headers={"Content-Security-Policy": FAQ_CSP})
