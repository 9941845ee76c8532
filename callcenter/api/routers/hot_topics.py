"""Hot topics (R7.6, issue 13 item 6): the back office and supervision see what many citizens asked
about in a period (the week by default) with the trend against the period before; the back office
publishes a public answer to a topic, shown on /public. The rules are ticketing.hot_topics; who
may do what, ticketing.access."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import StringConstraints

from callcenter.api.deps import ActorDep, DomainDep, IdPath, SessionDep, commit
from callcenter.api.routers.knowledge import get_segmenter
from callcenter.api.schemas import Code, Out, RequiredShort, RequiredText, Storable, Strict
from ticketing import hot_topics as ht
from ticketing.access import require_hot_topic_reader
from ticketing.errors import InvalidInput
from ticketing.figures.base import Period, asked_period
from ticketing.hot_topic_model import HotTopicAnswer

router = APIRouter(tags=["hot topics"])
public_router = APIRouter(tags=["public"])
Word = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64), Storable]


class TopicOut(Out):
    category_code: str
    category_name: str
    term: str
    place: str
    terms: list[str]
    count: int
    previous: int
    trend: str  # new | up | down | same
    case_numbers: list[str]
    answer_id: int | None


class HotTopicsOut(Out):
    since: datetime
    until: datetime
    previous_since: datetime
    topics: list[TopicOut]


class AnswerIn(Strict):
    category_code: Code
    term: Word
    place: Word = ""
    since: date | None = None  # the period the topic is hot in (default: the week)
    until: date | None = None
    title: RequiredShort
    answer: RequiredText


class AnswerOut(Out):
    id: int
    category_code: str
    category_name: str
    term: str
    place: str
    title: str
    answer: str
    cases: int
    since: datetime
    until: datetime
    published_at: datetime
    withdrawn_at: datetime | None


class PublicAnswerOut(Out):
    title: str
    answer: str
    category_name: str
    place: str
    cases: int
    published_at: datetime


def topic_period(domain, since: date | None, until: date | None) -> Period:
    """[since, until) in whole local days (today counts to its end: nothing in a topic falls due);
    neither: today and the days before (policy.hot_topics.days)."""
    policy = domain.policy.hot_topics
    if since is None and until is None:
        today = domain.clock().astimezone(domain.policy.tzinfo).date()
        since, until = today - timedelta(days=policy.days - 1), today + timedelta(days=1)
    if since is not None and until is not None and (until - since).days > policy.max_days:
        raise InvalidInput("period", f"at most {policy.max_days} days")
    checked = asked_period(domain.clock(), domain.policy.timezone, since=since, until=until)  # the same refusals
    return Period(checked.since, datetime.combine(until, time(0), tzinfo=domain.policy.tzinfo))


def _names(domain) -> dict[str, str]:
    return {c.code: c.name for c in domain.city.categories}


def _answer_out(a: HotTopicAnswer, names: dict[str, str]) -> AnswerOut:
    return AnswerOut(id=a.id, category_code=a.category_code, category_name=names.get(a.category_code, a.category_code),
                     term=a.term, place=a.place, title=a.title, answer=a.answer, cases=a.cases, since=a.since,
                     until=a.until, published_at=a.published_at, withdrawn_at=a.withdrawn_at)


@router.get("/hot-topics", response_model=HotTopicsOut,
            summary="R7.6: the period's hot topics (category, words, street) with counts and trend")
def hot_topics(request: Request, actor: ActorDep, session: SessionDep, domain: DomainDep,
               since: date | None = None, until: date | None = None) -> HotTopicsOut:
    require_hot_topic_reader(actor)
    period = topic_period(domain, since, until)
    topics = ht.hot_topics(session, get_segmenter(request, domain), period, domain.policy.hot_topics)
    commit(session)  # the terms made for cases read the first time are kept
    names = _names(domain)
    return HotTopicsOut(since=period.since, until=period.until, previous_since=ht.previous_period(period).since,
                        topics=[TopicOut(category_code=t.key.category_code,
                                         category_name=names.get(t.key.category_code, t.key.category_code),
                                         term=t.key.term, place=t.key.place, terms=t.terms, count=t.count,
                                         previous=t.previous, trend=t.trend, case_numbers=t.case_numbers,
                                         answer_id=t.answer_id) for t in topics])


@router.post("/hot-topics/answers", response_model=AnswerOut, status_code=201,
             summary="R7.6: the back office publishes the public answer to a hot topic")
def publish(body: AnswerIn, request: Request, actor: ActorDep, session: SessionDep, domain: DomainDep) -> AnswerOut:
    period = topic_period(domain, body.since, body.until)
    item = ht.publish_answer(session, get_segmenter(request, domain), actor, period=period,
                             policy=domain.policy.hot_topics,
                             key=ht.TopicKey(body.category_code, body.term, body.place),
                             title=body.title, answer=body.answer, now=domain.clock())
    commit(session)
    return _answer_out(item, _names(domain))


@router.get("/hot-topics/answers", response_model=list[AnswerOut], summary="The public answers in force")
def answers(actor: ActorDep, session: SessionDep, domain: DomainDep,
            limit: Annotated[int, Query(ge=1, le=100)] = 50) -> list[AnswerOut]:
    require_hot_topic_reader(actor)
    names = _names(domain)
    return [_answer_out(a, names) for a in ht.public_answers(session, limit)]


@router.post("/hot-topics/answers/{answer_id}/withdraw", response_model=AnswerOut,
             summary="Take a public answer off /public")
def withdraw(answer_id: IdPath, actor: ActorDep, session: SessionDep, domain: DomainDep) -> AnswerOut:
    item = ht.withdraw_answer(session, actor, answer_id, now=domain.clock())
    commit(session)
    return _answer_out(item, _names(domain))


def public_list(session, domain, limit: int = 20) -> list[PublicAnswerOut]:
    names = _names(domain)
    return [PublicAnswerOut(title=a.title, answer=a.answer, category_name=names.get(a.category_code, ""),
                            place=a.place, cases=a.cases, published_at=a.published_at)
            for a in ht.public_answers(session, limit)]


@public_router.get("/api/v1/public/hot-topics", response_model=list[PublicAnswerOut],
                   summary="R7.6: public answers to hot topics (no login, no personal data)")
def public_hot_topics(session: SessionDep, domain: DomainDep,
                      limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[PublicAnswerOut]:
    return public_list(session, domain, limit)
