"""R7.6: handled cases published online, and the public answers to hot topics above them. No login,
and no personal data ever."""
from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from callcenter.api.deps import DomainDep, OffsetQuery, SessionDep
from callcenter.api.routers.hot_topics import public_list
from callcenter.api.schemas import PublicCaseOut
from ticketing.models import Case
from ticketing.privacy import scrub

router = APIRouter(tags=["public"])

KIND_NAMES = {"consultation": "咨询", "suggestion": "建议批评", "complaint": "投诉举报", "urgent_help": "紧急求助"}
SATISFACTION_NAMES = {"satisfied": "满意", "basically_satisfied": "基本满意", "unsatisfied": "不满意", None: "—"}


def _published(session, limit: int, offset: int) -> list[PublicCaseOut]:
    stmt = (select(Case).where(Case.published_at.is_not(None), Case.confidential.is_(False))
            .order_by(Case.published_at.desc()).limit(limit).offset(offset))
    out = []
    for case in session.execute(stmt).scalars():
        notified = [wo.notified_at for wo in case.work_orders if wo.notified_at is not None]
        out.append(PublicCaseOut(
            number=case.number, kind=case.kind, category=case.category_code,
            title=scrub(case.title, names=[case.citizen_name], location=case.location),
            summary=case.public_summary or "", accepted_at=case.accepted_at,
            notified_at=min(notified) if notified else None,
            # published before 0006 kept no reviewed answer: the unit's, redacted on reading
            answer=case.public_answer if case.public_answer is not None else (
                scrub(case.answer, names=[case.citizen_name], location=case.location) if case.answer else None),
            satisfaction=case.satisfaction,
            closed_at=case.closed_at, published_at=case.published_at,
        ))
    return out


@router.get("/api/v1/public/cases", response_model=list[PublicCaseOut])
def public_cases(session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                 offset: OffsetQuery = 0) -> list[PublicCaseOut]:
    return _published(session, limit, offset)


@router.get("/public", response_class=HTMLResponse, include_in_schema=False)
def public_page(session: SessionDep, domain: DomainDep, page: Annotated[int, Query(ge=1, le=10000)] = 1) -> str:
    tz = domain.calendar.tz
    fmt = lambda d: d.astimezone(tz).strftime("%Y-%m-%d %H:%M") if d else "—"  # noqa: E731
    rows = []
    for c in _published(session, 20, (page - 1) * 20):
        rows.append(
            f"<article class='case' data-number='{html.escape(c.number)}'>"
            f"<h2>{html.escape(c.title)}</h2>"
            f"<p class='meta'>编号 {html.escape(c.number)} · {KIND_NAMES.get(c.kind.value, '')} · 受理 {fmt(c.accepted_at)}"
            f" · 告知 {fmt(c.notified_at)} · 办结 {fmt(c.closed_at)}</p>"
            f"<p class='summary'>{html.escape(c.summary)}</p>"
            f"<p class='answer'><b>答复：</b>{html.escape(c.answer or '')}</p>"
            f"<p class='satisfaction'>满意度：{SATISFACTION_NAMES.get(c.satisfaction.value if c.satisfaction else None)}</p>"
            "</article>"
        )
    body = "\n".join(rows) or "<p class='empty'>暂无公开的办理结果。</p>"
    hot = "\n".join(
        f"<article class='hot-topic'><h3>{html.escape(a.title)}</h3>"
        f"<p class='meta'>{html.escape(a.category_name)}{' · ' + html.escape(a.place) if a.place else ''}"
        f" · 相关诉求 {a.cases} 件 · 发布 {fmt(a.published_at)}</p>"
        f"<p class='answer'>{html.escape(a.answer)}</p></article>"
        for a in public_list(session, domain)) if page == 1 else ""
    hot = f"<section id='hot-topics'><h2>热点问题解答</h2>{hot}</section>" if hot else ""
    return f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>12345热线 办理结果公开</title>
<style>body{{font-family:sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}}
h1{{color:#b00}}article{{border-bottom:1px solid #ddd;padding:.5rem 0}}.meta{{color:#666;font-size:.9rem}}</style>
</head><body><h1>12345政府公共服务热线 · 办理结果公开</h1>{hot}{body}</body></html>"""
