"""Search the published knowledge base (R7.2): the one search every caller uses (desk page, screen-pop,
public FAQ, benchmark).

Two steps. The database returns the candidates: published, valid entries holding at least one of
the question's rarer terms (SQLite: the FTS5 table knowledge_fts; PostgreSQL: the tsvector column
search_vector, built from the same terms; how rare: the term counts in knowledge_terms). Both hold
exactly the terms of ticketing.knowledge_text, so both return the same candidate set. Python then
ranks them with one function (BM25F over the question side and the answer, the city's synonyms and
sound-alike pairs weighted less, a boost for the caller's category), so both databases give the
same order.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ticketing.knowledge_model import KnowledgeEntry, KnowledgeState, KnowledgeTerm
from ticketing.knowledge_text import Segmenter

# BM25F: the question side (question, variants, keywords) says what an entry is about; the answer
# mentions many things in passing.
QUESTION_WEIGHT, ANSWER_WEIGHT = 3.0, 1.0
K1, B = 1.2, 0.5
CATEGORY_BOOST = 1.3
# The database returns the entries holding the question's rarer terms, rarest first, while their
# entries add up to this; every term of the question still counts in the ranking. An entry that
# shares only common words with the question is not among the candidates (it would rank low).
RETRIEVAL_BUDGET = 400
CANDIDATE_CAP = 2000
TOTAL = "#"  # knowledge_terms row counting the entries indexed (a term is letters and digits only)


@dataclass(frozen=True)
class Hit:
    entry: KnowledgeEntry
    score: float


def searchable(now: datetime):
    """Published and inside its validity period: what operators and the public may read."""
    e = KnowledgeEntry
    return and_(e.state == KnowledgeState.PUBLISHED, or_(e.valid_from.is_(None), e.valid_from <= now),
                or_(e.valid_until.is_(None), e.valid_until > now))


# ---- the index --------------------------------------------------------------------------------
def set_index(session: Session, entry: KnowledgeEntry, terms: str, body: str) -> None:
    """Give `entry` its search terms and keep the term counts (knowledge_terms) in step."""
    before = set(f"{entry.search_terms or ''} {entry.search_body or ''}".split())
    after = set(f"{terms} {body}".split())
    delta = {t: 1 for t in after - before} | {t: -1 for t in before - after}
    if bool(before) != bool(after):
        delta[TOTAL] = 1 if after else -1
    entry.search_terms, entry.search_body = terms, body
    _add_counts(session, delta)


def _add_counts(session: Session, delta: dict[str, int]) -> None:
    rows = [{"term": t, "entries": n} for t, n in sorted(delta.items()) if n]  # sorted: rows locked in one order
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    make = postgresql_insert if dialect == "postgresql" else sqlite_insert
    stmt = make(KnowledgeTerm)
    stmt = stmt.on_conflict_do_update(index_elements=[KnowledgeTerm.term],
                                      set_={"entries": KnowledgeTerm.entries + stmt.excluded.entries})
    for start in range(0, len(rows), 500):
        session.execute(stmt, rows[start:start + 500])


def rebuild_term_counts(session: Session) -> int:
    """Count every term again from the entries (after a bulk load, or to repair)."""
    counts: Counter[str] = Counter()
    total = 0
    for terms, body in session.execute(select(KnowledgeEntry.search_terms, KnowledgeEntry.search_body)):
        held = set(f"{terms} {body}".split())
        counts.update(held)
        total += bool(held)
    session.execute(delete(KnowledgeTerm))
    counts[TOTAL] = total
    _add_counts(session, dict(counts))
    return len(counts)


# ---- the search -------------------------------------------------------------------------------
def _matching(session: Session, terms: list[str]):
    """The database's own index: entries holding any of `terms`."""
    if session.get_bind().dialect.name == "sqlite":
        expr = " OR ".join(f'"{t}"' for t in terms)
        return KnowledgeEntry.id.in_(select(text("rowid")).select_from(text("knowledge_fts"))
                                     .where(text("knowledge_fts MATCH :fts_query").bindparams(fts_query=expr)))
    expr = " | ".join(f"'{t}'" for t in terms)
    return text("knowledge_entries.search_vector @@ CAST(:ts_query AS tsquery)").bindparams(ts_query=expr)


def search(session: Session, segmenter: Segmenter, q: str | None, *, now: datetime, category: str | None = None,
           unit_id: int | None = None, limit: int = 20) -> list[Hit]:
    where = searchable(now)
    if unit_id is not None:
        where = and_(where, KnowledgeEntry.unit_id == unit_id)
    weights = segmenter.query(q or "")
    if not weights:
        if not q and category:  # the screen-pop with only the caller's category: its entries
            where = and_(where, KnowledgeEntry.category_code == category)
        elif q or unit_id is None:
            return []
        rows = session.execute(select(KnowledgeEntry).where(where).order_by(KnowledgeEntry.id).limit(limit)).scalars()
        return [Hit(e, 0.0) for e in rows]
    counts = dict(session.execute(select(KnowledgeTerm.term, KnowledgeTerm.entries)
                                  .where(KnowledgeTerm.term.in_([*weights, TOTAL]))).all())
    retrieve = retrieval_terms(weights, counts)
    if not retrieve:
        return []
    e = KnowledgeEntry
    if session.get_bind().dialect.name == "postgresql":
        # A prepared statement's generic plan cannot see how many entries the terms hold and scans
        # the whole table; a plan for these terms uses the GIN index (seconds vs milliseconds at 100k).
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    rows = session.execute(select(e.id, e.search_terms, e.search_body, e.category_code, e.categories)
                           .where(where, _matching(session, retrieve)).order_by(e.id).limit(CANDIDATE_CAP)).all()
    ranked = rank(rows, weights, counts, category)[:limit]
    entries = {x.id: x for x in session.execute(select(KnowledgeEntry).where(
        KnowledgeEntry.id.in_([i for i, _ in ranked]))).scalars()}
    return [Hit(entries[i], s) for i, s in ranked]


def retrieval_terms(weights: dict[str, float], counts: dict[str, int]) -> list[str]:
    """The question's terms that choose the candidates: the most telling (fewest entries for their
    weight) first, while their entries stay within the budget; always at least one."""
    present = sorted((t for t in weights if counts.get(t, 0) > 0), key=lambda t: (counts[t] / weights[t], t))
    chosen, total = [], 0
    for t in present:
        if chosen and total + counts[t] > RETRIEVAL_BUDGET:
            break
        chosen.append(t)
        total += counts[t]
    return chosen


def rank(rows, weights: dict[str, float], counts: dict[str, int], category: str | None) -> list[tuple[int, float]]:
    """BM25F over the candidates (ids, question-side terms, answer terms, categories), each term
    weighed by how few entries of the whole base hold it."""
    if not rows:
        return []
    total = max(counts.get(TOTAL, 0), len(rows), 50)
    idf = {t: math.log(1 + (total - counts.get(t, 0) + 0.5) / (counts.get(t, 0) + 0.5)) for t in weights}
    padded = [(r[0], f" {r[1]} ", f" {r[2]} ", r[3], r[4] or []) for r in rows]
    # lengths in terms; str.count keeps this loop in C (the candidates can be a thousand or two)
    lengths = [(p[1].count(" ") - 1, p[2].count(" ") - 1) for p in padded]
    avg_q = sum(x for x, _ in lengths) / len(rows) or 1.0
    avg_a = sum(y for _, y in lengths) / len(rows) or 1.0
    needles = {t: f" {t} " for t in weights}
    full = sum(weights.values())
    out = []
    for (entry_id, qs, ans, main_category, categories), (len_q, len_a) in zip(padded, lengths, strict=True):
        norm_q, norm_a = 1 - B + B * len_q / avg_q, 1 - B + B * len_a / avg_a
        score, matched = 0.0, 0.0
        for t, w in weights.items():
            needle = needles[t]
            tf = QUESTION_WEIGHT * qs.count(needle) / norm_q + ANSWER_WEIGHT * ans.count(needle) / norm_a
            if tf:
                score += w * idf[t] * tf * (K1 + 1) / (tf + K1)
                matched += w
        score *= (matched / full) ** 0.5  # a question answered in all its words ranks above one in some
        if category and (main_category == category or category in categories):
            score *= CATEGORY_BOOST
        out.append((entry_id, round(score, 6)))
    out.sort(key=lambda x: (-x[1], x[0]))
    return out
