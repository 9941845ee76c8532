"""Chinese search of the knowledge base (R7.2): the sample base seeded, synonyms, abbreviations and
typos found, and the same results on SQLite and PostgreSQL."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select, text

from tests.conftest import CONFIG_DIR, PG_BASE_URL, _pg_url
from ticketing.domain import Domain
from ticketing.knowledge_model import KnowledgeEntry, KnowledgeRevision, KnowledgeTerm
from ticketing.knowledge_search import rebuild_term_counts, search
from ticketing.knowledge_seed import load_entries, seed_knowledge
from ticketing.knowledge_text import segmenter_for
from ticketing.seed import seed_units
from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

QUERIES = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "knowledge_queries.yaml"
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def segmenter():
    return segmenter_for(CONFIG_DIR)


def _seeded(sessions, segmenter):
    domain = Domain.load(CONFIG_DIR)
    with session_scope(sessions) as s:
        seed_units(s, domain.city, NOW)
        return seed_knowledge(s, CONFIG_DIR, segmenter, NOW)


def _keys(session, hits):
    keys = dict(session.execute(select(KnowledgeEntry.id, KnowledgeEntry.seed_key)).all())
    return [keys[h.entry.id] for h in hits]


def test_r7_2_the_sample_base_is_seeded_once_published_and_counted(sessions, segmenter):
    first = _seeded(sessions, segmenter)
    assert first.added == len(load_entries(CONFIG_DIR)) >= 80
    again = _seeded(sessions, segmenter)
    assert not again.changed
    with session_scope(sessions) as s:
        states = set(s.execute(select(KnowledgeEntry.state)).scalars())
        units = s.execute(select(func.count(func.distinct(KnowledgeEntry.unit_id)))).scalar_one()
        assert states == {"published"} and units >= 10
        assert s.execute(select(func.count(KnowledgeRevision.id))).scalar_one() == first.added
        # the kept counts are what counting again gives
        kept = dict(s.execute(select(KnowledgeTerm.term, KnowledgeTerm.entries)).all())
        rebuild_term_counts(s)
        assert dict(s.execute(select(KnowledgeTerm.term, KnowledgeTerm.entries)).all()) == kept


@pytest.mark.parametrize("question, key", [
    ("公基金租房能取吗", "fund-withdraw-rent"),          # homophone typo of 公积金
    ("住房公积金余额查询", "fund-balance-query"),          # full name of an abbreviation
    ("房本丢了", "re-lost-cert"),                          # colloquial name of 不动产权证
    ("停水", "water-outage-query"),                        # two characters
    ("电瓶车", None),                                      # nothing about it in the base
])
def test_r7_2_synonyms_abbreviations_and_typos_find_the_entry(sessions, segmenter, question, key):
    _seeded(sessions, segmenter)
    with session_scope(sessions) as s:
        top = _keys(s, search(s, segmenter, question, now=NOW, limit=5))
        if key is None:
            assert "fund-withdraw-rent" not in top
        else:
            assert top[0] == key, top


def test_r7_2_the_screen_pop_lists_the_callers_category_and_ranks_it_first(sessions, segmenter):
    _seeded(sessions, segmenter)
    with session_scope(sessions) as s:
        listed = search(s, segmenter, None, now=NOW, category="gas_supply", limit=50)
        assert listed and {h.entry.category_code for h in listed} == {"gas_supply"}
        # the same words, the caller's category first
        plain = _keys(s, search(s, segmenter, "网上缴费", now=NOW, limit=20))
        boosted = _keys(s, search(s, segmenter, "网上缴费", now=NOW, category="gas_supply", limit=20))
        assert "gas-bill" in boosted and boosted.index("gas-bill") < (plain.index("gas-bill") if "gas-bill" in plain else 99)


def test_the_benchmark_questions_are_not_copies_of_the_entries():
    asked = {e["content"]["question"] for e in load_entries(CONFIG_DIR)}
    asked |= {v for e in load_entries(CONFIG_DIR) for v in e["content"]["variants"]}
    queries = yaml.safe_load(QUERIES.read_text(encoding="utf-8"))["queries"]
    keys = {e["key"] for e in load_entries(CONFIG_DIR)}
    assert len(queries) >= 150
    assert [q["q"] for q in queries if q["q"] in asked or q["q"].rstrip("？?") in {a.rstrip("？?") for a in asked}] == []
    assert {q["key"] for q in queries} <= keys


def test_r7_2_sqlite_and_postgresql_give_the_same_results_on_the_sample_base(tmp_path, segmenter):
    """Same candidates, same ranking, same scores for every benchmark question."""
    queries = [q["q"] for q in yaml.safe_load(QUERIES.read_text(encoding="utf-8"))["queries"]]
    queries += ["公积金", "停水 宜城街道", "医保 异地", "12345"]
    results = {}
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        for name, url in (("sqlite", f"sqlite:///{tmp_path / 'kb.db'}"), ("postgresql", _pg_url(schema))):
            upgrade(url)
            engine = make_engine(url)
            sessions = make_session_factory(engine)
            _seeded(sessions, segmenter)
            with session_scope(sessions) as s:
                results[name] = [[(h.entry.seed_key, h.score) for h in search(s, segmenter, q, now=NOW, limit=10)]
                                 for q in queries]
            engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    assert sum(1 for r in results["sqlite"] if r) >= len(queries) - 2
    assert results["sqlite"] == results["postgresql"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_entries_made_before_0015_become_published_and_are_found_after_seeding(tmp_path, segmenter, backend):
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_BASE_URL)
    if backend == "postgresql":
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else _pg_url(schema)
    try:
        upgrade(url, "0010")
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO member_units (code, name, type, joined, phone, report_approval) "
                              "VALUES ('water_supply', '宜兴市自来水公司', 'enterprise', true, '', false)"))
            for active in (True, False):
                conn.execute(text("INSERT INTO knowledge_entries (unit_id, category_code, question, answer, keywords, "
                                  "active, updated_at) VALUES (1, 'water_supply', :q, '关注自来水公司公众号。', '', :a, :t)"),
                             {"q": "停水怎么查询？" if active else "旧的停水公告", "a": active, "t": NOW})
        upgrade(url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT state, version FROM knowledge_entries ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [("published", 1), ("withdrawn", 1)]
            assert conn.execute(text("SELECT count(*) FROM knowledge_revisions WHERE state = 'published'")).scalar() == 2
        sessions = make_session_factory(engine)
        report = _seeded(sessions, segmenter)
        assert report.indexed == 2
        with session_scope(sessions) as s:
            assert "停水怎么查询？" in [h.entry.question for h in search(s, segmenter, "停水怎么查", now=NOW)]
            assert "旧的停水公告" not in [h.entry.question for h in search(s, segmenter, "停水公告", now=NOW)]
        engine.dispose()
    finally:
        if backend == "postgresql":
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
