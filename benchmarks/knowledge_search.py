#!/usr/bin/env python3
"""Knowledge-base search quality and speed (issue 13): recall@1, recall@5 and query latency.

The store holds the sample base (config/knowledge/, 93 entries) and N synthetic filler entries
written from templates over the sample city's places and services (so they share the real entries'
words: 停水, 路灯, 报名, 补办 ...). The questions are benchmarks/data/knowledge_queries.yaml: 177 citizen
questions, colloquial, abbreviated and with typos, each labelled with the entry that answers it.
Every query goes through ticketing.knowledge_search.search, the function the API uses, on a fresh
migrated store of each database.

    .venv/bin/python benchmarks/knowledge_search.py --db both --sizes 0,10000,100000

PostgreSQL at CALLCENTER_BENCH_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/test), in a
schema of its own dropped afterwards.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ticketing.domain import Domain  # noqa: E402
from ticketing.knowledge_model import KnowledgeEntry, KnowledgeState  # noqa: E402
from ticketing.knowledge_search import rebuild_term_counts, search  # noqa: E402
from ticketing.knowledge_seed import seed_knowledge  # noqa: E402
from ticketing.knowledge_text import segmenter_for  # noqa: E402
from ticketing.seed import seed_units  # noqa: E402
from ticketing.store import make_engine, make_session_factory, session_scope, upgrade  # noqa: E402

CONFIG = ROOT / "config"
QUERIES = ROOT / "benchmarks" / "data" / "knowledge_queries.yaml"
PG = os.environ.get("CALLCENTER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)

PLACES = ["宜城街道", "屺亭街道", "新街街道", "新庄街道", "丁蜀镇", "和桥镇", "张渚镇", "官林镇", "高塍镇", "周铁镇",
          "太华镇", "湖父镇", "西渚镇", "杨巷镇", "徐舍镇", "万石镇", "芳桥街道", "环科园"]
SITES = ["人民路", "解放东路", "阳羡路", "东氿大道", "荆邑路", "团氿路", "光明村", "红塔村", "东山社区", "南园社区",
         "陶都路", "城北小区", "锦绣花园", "龙背山公园", "紫砂工业园", "氿滨大道", "茗岭村", "湖滨新村"]
THINGS = ["路灯", "窨井盖", "绿化带", "公共厕所", "垃圾中转站", "健身器材", "停车位", "消防通道", "雨水管道", "污水管网",
          "围墙", "桥梁栏杆", "交通信号灯", "公交站台", "充电桩", "农贸市场", "老年活动室", "社区卫生服务站",
          "便民服务点", "文化礼堂", "河道护坡", "人行天桥", "快递驿站", "电动车棚", "二次供水泵房", "广场舞场地"]
ISSUES = ["损坏", "维修进度", "开放时间", "收费标准", "申请使用", "改造计划", "噪音扰民", "卫生脏乱", "占用", "积水",
          "安全隐患", "管理单位", "预约方式", "补助申请", "排队时间", "建设进度", "搬迁安排", "停用通知"]
ACTIONS = ["由所在镇（街道）负责日常管理", "由市城市管理局统一维护", "由属地社区每周巡查", "已纳入年度民生实事项目",
           "请先向社区居委会反映", "可通过12345提交诉求", "由物业服务企业负责", "按照有关规定分批实施"]


def filler(rng: random.Random, i: int) -> dict:
    place, site, thing, issue = rng.choice(PLACES), rng.choice(SITES), rng.choice(THINGS), rng.choice(ISSUES)
    other = rng.choice(THINGS)
    return {
        "question": f"{place}{site}的{thing}{issue}怎么处理？（{i}）",
        "variants": [f"{site}{thing}{issue}"],
        "answer": f"{place}{site}的{thing}{rng.choice(ACTIONS)}，{issue}问题{rng.choice(ACTIONS)}；"
                  f"涉及{other}的，{rng.choice(ACTIONS)}。办理结果将在规定时限内答复。",
    }


def build_store(url: str, fillers: int, seed: int = 13) -> object:
    """A migrated store with the units, the sample base and `fillers` synthetic published entries."""
    upgrade(url)
    domain = Domain.load(CONFIG)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    seg = segmenter_for(CONFIG)
    with session_scope(sessions) as s:
        seed_units(s, domain.city, NOW)
        seed_knowledge(s, CONFIG, seg, NOW)
    rng = random.Random(seed)
    with engine.begin() as conn:
        unit_ids = [r[0] for r in conn.execute(text("SELECT id FROM member_units WHERE joined"))]
        batch = []
        for i in range(fillers):
            f = filler(rng, i)
            terms, body = seg.index_fields(f["question"], f["variants"], "", f["answer"])
            batch.append({"unit_id": rng.choice(unit_ids), "category_code": None, "question": f["question"],
                          "answer": f["answer"], "keywords": "", "active": True, "updated_at": NOW,
                          "state": KnowledgeState.PUBLISHED, "variants": f["variants"], "categories": [],
                          "legal_basis": "", "source_links": [], "review_interval_days": 365,
                          "review_due_at": NOW + timedelta(days=365), "version": 1, "published_at": NOW,
                          "search_terms": terms, "search_body": body})
            if len(batch) == 2000:
                conn.execute(insert(KnowledgeEntry), batch)
                batch = []
        if batch:
            conn.execute(insert(KnowledgeEntry), batch)
    with session_scope(sessions) as s:
        rebuild_term_counts(s)  # the filler went in without the ORM's bookkeeping
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE knowledge_entries"))
    return engine


def load_queries() -> list[dict]:
    return yaml.safe_load(QUERIES.read_text(encoding="utf-8"))["queries"]


def run(engine, queries: list[dict], rounds: int = 3) -> dict:
    seg = segmenter_for(CONFIG)
    sessions = make_session_factory(engine)
    hits1 = hits5 = 0
    latencies, cpu = [], []
    misses = []
    with session_scope(sessions) as s:
        keys = dict(s.execute(text("SELECT id, seed_key FROM knowledge_entries WHERE seed_key IS NOT NULL")).all())
        for q in queries:  # warm: jieba's dictionary, the database's cache
            search(s, seg, q["q"], now=NOW, limit=5)
        for r in range(rounds):
            for q in queries:
                t0, c0 = time.perf_counter(), time.process_time()
                found = search(s, seg, q["q"], now=NOW, limit=5)
                latencies.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                if r == 0:
                    top = [keys.get(h.entry.id) for h in found]
                    hits1 += top[:1] == [q["key"]]
                    hits5 += q["key"] in top
                    if q["key"] not in top:
                        misses.append((q["q"], q["key"], top[:3]))
    latencies.sort()
    cpu.sort()
    n = len(queries)
    return {"recall@1": hits1 / n, "recall@5": hits5 / n, "p50_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
            "cpu_p95_ms": cpu[int(len(cpu) * 0.95) - 1] * 1000, "misses": misses}


def _url(db: str, tmp: Path) -> tuple[str, object]:
    if db == "sqlite":
        return f"sqlite:///{tmp / f'kb-{uuid.uuid4().hex[:6]}.db'}", None
    schema = f"kbbench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    return f"{PG}?options=-csearch_path%3D{schema}", (admin, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--sizes", default="0,10000,100000", help="filler entries beside the sample base")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--misses", action="store_true", help="print the queries whose entry is not in the top 5")
    args = parser.parse_args()
    queries = load_queries()
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(f"{len(queries)} queries; {args.rounds} timed rounds each")
    # wall time counts the machine's other load; this process's CPU time does not (on SQLite that is
    # the whole query, on PostgreSQL the client's part only)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| database | entries | recall@1 | recall@5 | p50 ms | p95 ms | p95 CPU ms (this process) | build s | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        from callcenter.audit_vault import install as install_audit_vault

        install_audit_vault(Path(tmp) / "state")  # the seed records audit events (A1): a throwaway key
        for size in (int(x) for x in args.sizes.split(",")):
            for db in dbs:
                url, cleanup = _url(db, Path(tmp))
                t0 = time.perf_counter()
                engine = build_store(url, size)
                built = time.perf_counter() - t0
                try:
                    r = run(engine, queries, args.rounds)
                finally:
                    engine.dispose()
                    if cleanup:
                        admin, schema = cleanup
                        with admin.begin() as conn:
                            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                        admin.dispose()
                print(f"| {db} | {size + 93:,} | {r['recall@1']:.3f} | {r['recall@5']:.3f} | {r['p50_ms']:.1f} | "
                      f"{r['p95_ms']:.1f} | {r['cpu_p95_ms']:.1f} | {built:.0f} | {os.getloadavg()[0]:.1f} |", flush=True)
                if args.misses:
                    for miss in r["misses"]:
                        print("   miss:", miss)


if __name__ == "__main__":
    main()
