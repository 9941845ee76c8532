"""Hot topics (热点, R7.6; issue 13 item 6): what many citizens asked about in a period, and the
public answers the back office publishes for them.

A topic is deterministic and explainable: (category, term, place).
- Each case's terms: its title and description segmented by the knowledge base's segmenter
  (ticketing.knowledge_text: the city's dictionary, synonyms read as one word: 没水 → 停水), Chinese
  words of two characters or more only (no numbers: no phone or door numbers), without stopwords,
  the dictionary's `topic_stopwords` (市民, 反映 ...), the citizen's name and the words of the place.
- Its term: of the case's terms, the one most characteristic of its category in the cases read
  (requests of that category holding it, times log(1 + cases / requests of any category holding
  it)); ties: the longer word, then the later in code-point order.
- Its place: the street (road, lane, village, estate) of the case's location, never a door
  (`street_of`), when at least `min_cases` requests of the same category and term name that street;
  otherwise the topic is the city's ("" place).
Cases read: the period and the one of equal length before it (the trend compares them), accepted
(not refused under R3.1), with a category; merged repeats count (each is a citizen who asked).
R7.3c: cases reported to the discipline commission are never read, so they never count in a topic,
never name one and never reach a public answer.

A case's terms are kept (`CaseTerms`) with a fingerprint of the text and dictionary they came from,
so a month of cases is segmented once, not on every look.

A public answer (`HotTopicAnswer`) is published by the back office for a topic hot in a period
(only a topic that is one; same check of personal data as a published case, ticketing.privacy:
text still holding any is refused); a newer answer to the same topic replaces it; it may be
withdrawn. Each is an audit event (A1).
"""
from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ticketing import audit
from ticketing.access import require_hot_topic_publisher
from ticketing.audit import Actor
from ticketing.enums import CaseStatus
from ticketing.errors import InvalidInput, NotFound
from ticketing.figures.base import Period
from ticketing.hot_topic_model import CaseTerms, HotTopicAnswer
from ticketing.knowledge_text import Segmenter
from ticketing.models import Case
from ticketing.policy import HotTopicPolicy
from ticketing.privacy import LABELS, find_personal_data

__all__ = ["HotTopic", "TopicKey", "hot_topics", "previous_period", "public_answers", "publish_answer",
           "street_of", "topic_cases", "withdraw_answer"]

TOP_TERMS = 5
SHOWN_CASES = 20
_HAN = re.compile(r"[\u4e00-\u9fff]")
# Where a door starts: a digit, or a Chinese number before 号/幢/栋/组/单元/室/楼/层.
_DOOR = re.compile(r"[0-9０-９]|[一二三四五六七八九十百零〇两]+\s*(?:号|幢|栋|组|单元|室|楼|层)")
# (not cut before 街道: 新街街道 is one sub-district, not the street 新街)
_PLACE_PART = re.compile(r"[\u4e00-\u9fa5]+?(?:街道|大道|胡同|小区|花园|新村|社区|路|街|巷|弄|道|镇|乡|村)(?!街道|道)")
_AREA = ("街道", "镇", "乡", "社区")  # a sub-district: the street inside it says more


def street_of(location: str) -> str:
    """The street of a place as the topic names it: 宜城街道人民路88号3单元 → 人民路, 丁蜀镇西望村三组 →
    西望村, 阳光小区5幢 → 阳光小区, 宜城街道 → 宜城街道; "" when it names none. Never a door: the text
    from the first door number on is dropped, and a result holding personal data is none."""
    head = re.sub(r"\s+", "", _DOOR.split(location or "", maxsplit=1)[0])
    parts = _PLACE_PART.findall(head)
    if not parts:
        return ""
    street = next((p for p in parts if not p.endswith(_AREA)), parts[0])
    if not 2 <= len(street) <= 20 or find_personal_data(street):
        return ""
    return street


@dataclass(frozen=True)
class TopicKey:
    category_code: str
    term: str
    place: str = ""


@dataclass
class HotTopic:
    key: TopicKey
    terms: list[str]          # the words most of its requests hold, its term first
    count: int                # requests in the period
    previous: int             # in the period of equal length before
    trend: str                # new | up | down | same
    case_numbers: list[str] = field(default_factory=list)  # newest first, at most SHOWN_CASES
    answer_id: int | None = None  # its public answer, if one is published
    case_ids: list[int] = field(default_factory=list, repr=False)  # all of them, newest first


@dataclass(frozen=True)
class _Read:
    id: int
    number: str
    category: str
    place: str
    accepted_at: datetime
    terms: tuple[str, ...]


def previous_period(period: Period) -> Period:
    """The period of equal length just before (the trend's comparison)."""
    return Period(period.since - (period.until - period.since), period.since)


# ---- terms ------------------------------------------------------------------------------------
def _source(segmenter: Segmenter, title: str, description: str, location: str, name: str) -> str:
    text = "\x1f".join((segmenter.vocabulary.fingerprint, title, description, location, name))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def case_terms(segmenter: Segmenter, title: str, description: str, location: str, name: str) -> tuple[str, ...]:
    """The terms of one case (see the module's note), in order of first appearance."""
    skip = segmenter.vocabulary.topic_stopwords
    place, name = (location or "").strip(), (name or "").strip()
    out: dict[str, None] = {}
    for term in segmenter.words(f"{title} {description}"):
        if (len(term) < 2 or not _HAN.search(term) or not _HAN.fullmatch(term[0]) or term in skip
                or (place and term in place) or (len(name) >= 2 and (term in name or name in term))):
            continue
        out.setdefault(term, None)
    return tuple(out)


def _upsert(session: Session, values: list[dict]) -> None:
    table = CaseTerms.__table__
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for i in range(0, len(values), 1000):
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=[table.c.case_id],
                                          set_={"source": stmt.excluded.source, "terms": stmt.excluded.terms})
        session.execute(stmt, values[i:i + 1000])


def _read(session: Session, segmenter: Segmenter, period: Period) -> list[_Read]:
    """The cases a topic may count in `period` (module note), with their terms; terms missing or
    made from another text or dictionary are made now and kept (the caller commits)."""
    rows = session.execute(
        select(Case.id, Case.number, Case.category_code, Case.location, Case.accepted_at, Case.title,
               Case.description, Case.citizen_name, CaseTerms.source, CaseTerms.terms)
        .outerjoin(CaseTerms, CaseTerms.case_id == Case.id)
        .where(Case.accepted_at >= period.since, Case.accepted_at < period.until,
               Case.confidential.is_(False),  # R7.3c: never read
               Case.status != CaseStatus.REJECTED, Case.category_code.is_not(None))
        .order_by(Case.id)).all()
    out, fresh = [], []
    for cid, number, category, location, accepted_at, title, description, name, kept_source, kept in rows:
        source = _source(segmenter, title, description, location, name)
        if source == kept_source:
            terms = tuple(kept.split()) if kept else ()
        else:
            terms = case_terms(segmenter, title, description, location, name)
            fresh.append({"case_id": cid, "source": source, "terms": " ".join(terms)})
        out.append(_Read(cid, number, category, street_of(location), accepted_at, terms))
    if fresh:
        _upsert(session, fresh)
    return out


# ---- topics -----------------------------------------------------------------------------------
def _keys(cases: list[_Read], min_cases: int) -> dict[int, TopicKey]:
    """Each case's topic (module note), decided over all the cases read."""
    n = len(cases)
    anywhere = Counter(t for c in cases for t in c.terms)
    in_category = Counter((c.category, t) for c in cases for t in c.terms)

    weight = {(cat, t): (k * math.log(1 + n / anywhere[t]), len(t), t) for (cat, t), k in in_category.items()}
    terms = {c.id: (max(c.terms, key=lambda t, cat=c.category: weight[(cat, t)]) if c.terms else "") for c in cases}
    at_place = Counter((c.category, terms[c.id], c.place) for c in cases if c.place)
    return {c.id: TopicKey(c.category, terms[c.id],
                           c.place if c.place and at_place[(c.category, terms[c.id], c.place)] >= min_cases else "")
            for c in cases}


def _trend(count: int, previous: int) -> str:
    if previous == 0:
        return "new"
    return "up" if count > previous else "down" if count < previous else "same"


def hot_topics(session: Session, segmenter: Segmenter, period: Period, policy: HotTopicPolicy,
               *, top: int | None = None) -> list[HotTopic]:
    """The topics of at least `policy.min_cases` requests in `period`, most requests first (then the
    steeper rise, then by key), with their count in the period before and their published answer."""
    before = previous_period(period)
    cases = _read(session, segmenter, Period(before.since, period.until))
    keys = _keys(cases, policy.min_cases)
    now_cases: dict[TopicKey, list[_Read]] = defaultdict(list)
    previous: Counter[TopicKey] = Counter()
    for c in cases:
        if c.accepted_at >= period.since:
            now_cases[keys[c.id]].append(c)
        else:
            previous[keys[c.id]] += 1
    answers = _current_answers(session)
    out = []
    for key, members in now_cases.items():
        if len(members) < policy.min_cases:
            continue
        counted = Counter(t for c in members for t in c.terms if t != key.term)
        words = ([key.term] if key.term else []) + [t for t, _ in sorted(counted.items(), key=lambda x: (-x[1], x[0]))]
        newest = sorted(members, key=lambda c: (c.accepted_at, c.id), reverse=True)
        out.append(HotTopic(key, words[:TOP_TERMS], len(members), previous[key], _trend(len(members), previous[key]),
                            [c.number for c in newest[:SHOWN_CASES]], answers.get(key), [c.id for c in newest]))
    out.sort(key=lambda t: (-t.count, -(t.count - t.previous), t.key.category_code, t.key.term, t.key.place))
    return out[: top or policy.top]


def topic_cases(session: Session, segmenter: Segmenter, period: Period, policy: HotTopicPolicy,
                key: TopicKey) -> list[int]:
    """The ids of the period's requests on a topic that is hot in it; NotFound if it is not one."""
    for topic in hot_topics(session, segmenter, period, policy, top=10**6):
        if topic.key == key:
            return topic.case_ids
    raise NotFound("hot topic", f"{key.category_code}/{key.term}/{key.place}")


# ---- public answers ---------------------------------------------------------------------------
def _current_answers(session: Session) -> dict[TopicKey, int]:
    rows = session.execute(select(HotTopicAnswer.id, HotTopicAnswer.category_code, HotTopicAnswer.term,
                                  HotTopicAnswer.place).where(HotTopicAnswer.withdrawn_at.is_(None))).all()
    return {TopicKey(c, t, p): i for i, c, t, p in rows}


def _personal_data(texts: dict[str, str], names: Iterable[str], locations: Iterable[str]) -> list[str]:
    """What personal data each text still holds (ticketing.privacy, the rule of published cases),
    with the names and places of the topic's requests."""
    names, places = sorted({n for n in names if n}), sorted({p for p in locations if p}) or [""]
    found = []
    for label, text in texts.items():
        kinds = {kind for place in places for _s, _e, kind in find_personal_data(text, names=names, location=place)}
        found += [f"{label}中的{LABELS[k]}" for k in sorted(kinds)]
    return found


def publish_answer(session: Session, segmenter: Segmenter, actor: Actor, *, period: Period, policy: HotTopicPolicy,
                   key: TopicKey, title: str, answer: str, now: datetime) -> HotTopicAnswer:
    """R7.6: the back office publishes the answer to a topic hot in `period`; it replaces an earlier
    answer to the same topic. Refused: another role; a topic that is not one in the period; text
    holding personal data."""
    require_hot_topic_publisher(actor)
    title, answer = title.strip(), answer.strip()
    if not title or not answer:
        raise InvalidInput("R7.6", "a public answer needs a title and an answer")
    ids = topic_cases(session, segmenter, period, policy, key)
    people = [row for i in range(0, len(ids), 1000) for row in session.execute(
        select(Case.citizen_name, Case.location).where(Case.id.in_(ids[i:i + 1000])))]
    left = _personal_data({"标题": title, "答复": answer}, [n for n, _ in people], [loc for _, loc in people])
    if left:
        raise InvalidInput("R7.6", "the text to publish still holds personal data (" + "、".join(left)
                           + "); remove or rewrite it")
    for old in session.execute(select(HotTopicAnswer).where(
            HotTopicAnswer.category_code == key.category_code, HotTopicAnswer.term == key.term,
            HotTopicAnswer.place == key.place, HotTopicAnswer.withdrawn_at.is_(None))).scalars():
        old.withdrawn_at, old.withdrawn_by_id = now, actor.user_id
    item = HotTopicAnswer(category_code=key.category_code, term=key.term, place=key.place, title=title,
                          answer=answer, cases=len(ids), since=period.since, until=period.until, published_at=now,
                          published_by_id=actor.user_id)
    session.add(item)
    session.flush()
    audit.record(session, actor, "hot_topic_publish", at=now,
                 data={"answer": item.id, "category": key.category_code, "term": key.term, "place": key.place,
                       "cases": len(ids)})
    return item


def withdraw_answer(session: Session, actor: Actor, answer_id: int, *, now: datetime) -> HotTopicAnswer:
    require_hot_topic_publisher(actor)
    item = session.get(HotTopicAnswer, answer_id)
    if item is None:
        raise NotFound("hot topic answer", answer_id)
    if item.withdrawn_at is None:
        item.withdrawn_at, item.withdrawn_by_id = now, actor.user_id
        audit.record(session, actor, "hot_topic_withdraw", at=now, data={"answer": item.id})
    return item


def public_answers(session: Session, limit: int = 20, offset: int = 0) -> list[HotTopicAnswer]:
    """What /public shows: the answers in force, newest first."""
    return list(session.execute(select(HotTopicAnswer).where(HotTopicAnswer.withdrawn_at.is_(None))
                                .order_by(HotTopicAnswer.published_at.desc(), HotTopicAnswer.id.desc())
                                .limit(limit).offset(offset)).scalars())
