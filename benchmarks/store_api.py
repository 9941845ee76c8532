#!/usr/bin/env python3
"""Case store benchmarks (run by hand; not part of the test suite).

``throughput``: case create + dispatch through the HTTP API (real uvicorn server in its own
process, httpx clients on a few threads) against the floor: a bare FastAPI endpoint that inserts
one row into the same database, served the same way. Reports requests/s, p50/p95 latency and the
cost ratio (goal: one create+dispatch <= 3x the floor's cost), and the server process's CPU per
operation against the floor's (on a loaded machine requests/s mostly measure the waiting for a
core; the CPU ratio hardly moves; PostgreSQL's own CPU is in neither).

``overdue``: ``ticketing.queries.overdue_reports`` (ordered, first 100, as the API pages it) and
``GET /api/v1/work-orders?due=overdue&limit=100`` at 10k, 100k and 1M cases bulk-inserted
directly (COPY on PostgreSQL, executemany on SQLite), about 1.5 % of work orders overdue. Prints
the plan (EXPLAIN) so the index in use is visible. Goal: 1M <= 2x the 10k time.

Each run uses a fresh store: a temporary SQLite file, or a new schema in the PostgreSQL database
of $CALLCENTER_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test), dropped
at the end.

    .venv/bin/python benchmarks/store_api.py throughput --db both --ops 600 --concurrency 4
    .venv/bin/python benchmarks/store_api.py overdue --db both --sizes 10000,100000,1000000
    .venv/bin/python benchmarks/store_api.py throughput --db postgresql --profile /tmp/prof.html
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from sqlalchemy import text  # noqa: E402

from ticketing.store import make_engine  # noqa: E402

PG_BASE_URL = os.environ.get("CALLCENTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CONFIG_DIR = ROOT / "config"
PASSWORD = "bench-password-12345"
CASE_BODY = {"kind": "consultation", "channel": "mobile", "title": "自来水停水咨询",
             "description": "宜城街道某小区停水，何时恢复？" * 4, "citizen_phone": "13800001111"}


# ---- stores ----------------------------------------------------------------------------------

@contextmanager
def fresh_store(kind: str) -> Iterator[str]:
    """A migrated, empty store; removed afterwards."""
    from ticketing.store import upgrade

    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            upgrade(url)
            yield url
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def seed_people(url: str) -> None:
    from callcenter.auth import create_user
    from ticketing.domain import Domain
    from ticketing.seed import seed_units
    from ticketing.store import make_session_factory, session_scope

    from callcenter.audit_vault import install

    install(state_dir())  # A1: the same audit key as the servers' (hotline_app)
    domain = Domain.load(CONFIG_DIR)
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as s:
        seed_units(s, domain.city, domain.clock())
        for username, role, unit in (("op1", "front_desk", None), ("bo1", "back_office", None),
                                     ("water1", "unit_staff", "water_supply")):
            create_user(s, username=username, password=PASSWORD, role=role, unit_code=unit, now=domain.clock())
    engine.dispose()


class FloorIn(BaseModel):
    title: str
    description: str


# ---- servers (own process, so the client does not share the server's GIL) --------------------

def floor_app(url: str):
    """The floor: parse a JSON body, insert one row, answer JSON. Nothing else."""
    from fastapi import FastAPI
    from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text

    engine = make_engine(url)
    table = Table("bench_floor", MetaData(), Column("id", Integer, primary_key=True),
                  Column("title", String(200)), Column("description", Text),
                  Column("created_at", DateTime(timezone=True)))
    table.create(engine, checkfirst=True)

    app = FastAPI()

    @app.post("/floor", status_code=201)
    def insert(body: FloorIn) -> dict:
        with engine.begin() as conn:
            new_id = conn.execute(table.insert().values(title=body.title, description=body.description,
                                                        created_at=datetime.now(UTC))
                                  .returning(table.c.id)).scalar_one()
        return {"id": new_id}

    @app.get("/healthz")
    def health() -> dict:
        return {"ok": True}

    return app


def hotline_app(url: str):
    from callcenter.api.app import create_app
    from callcenter.settings import Settings

    return create_app(Settings(database_url=url, config_dir=CONFIG_DIR, state_dir=state_dir()))


def state_dir() -> Path:
    """The run's state directory (its audit key and checkpoints): made by main, given to the
    server processes through the environment, so every run's audit chain verifies on its own."""
    return Path(os.environ["STORE_BENCH_STATE_DIR"])


def serve_main(which: str, url: str, port: int, profile: str | None) -> None:
    import uvicorn

    app = floor_app(url) if which == "floor" else hotline_app(url)
    if profile:
        # pyinstrument samples one thread: run sync endpoints inline on the event loop's thread
        # (faithful with --concurrency 1, which is how profiles are taken).
        import anyio.to_thread
        from pyinstrument import Profiler

        async def inline(func, *args, **_kw):
            return func(*args)

        anyio.to_thread.run_sync = inline

        profiler = Profiler(async_mode="disabled", interval=0.0005)
        profiler.start()
        try:
            uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        finally:
            profiler.stop()
            Path(profile).write_text(profiler.output_html())
            print(profiler.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)
        return
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextmanager
def server(which: str, url: str, profile: str | None = None) -> Iterator[str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, __file__, "_serve", which, url, str(port)] + (["--profile", profile] if profile else [])
    proc = subprocess.Popen(cmd, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    SERVER_PIDS[base] = proc.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{which} server exited with {proc.returncode}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{which} server did not start")
            time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(2)  # SIGINT: uvicorn shuts down cleanly, the profiler writes its report
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---- load ------------------------------------------------------------------------------------

SERVER_PIDS: dict[str, int] = {}  # base URL -> the server process


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used: unlike requests/s, hardly moved by other
    processes on a loaded machine. The database server's own CPU (PostgreSQL) is not in it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run_load(n: int, concurrency: int, make_client: Callable[[], httpx.Client],
             op: Callable[[httpx.Client], dict[str, float]], warmup: int = 20, server_pid: int | None = None) -> dict:
    """n operations over `concurrency` threads, each with its own keep-alive client; with
    `server_pid`, also the server process's CPU per operation."""
    lock = threading.Lock()
    samples: dict[str, list[float]] = {}
    counter = iter(range(n + warmup))

    def worker():
        with make_client() as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                timings = op(client)
                if i >= warmup:
                    with lock:
                        for key, value in timings.items():
                            samples.setdefault(key, []).append(value)

    # warm-up first, alone, so connections and caches are hot before the clock starts
    with make_client() as client:
        for _ in range(warmup):
            next(counter)
            op(client)
    cpu_before = process_cpu(server_pid) if server_pid else 0.0
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    elapsed = time.perf_counter() - started
    out = {"n": n, "seconds": elapsed, "ops_per_s": n / elapsed}
    if server_pid:
        out["server_cpu_ms"] = 1000 * (process_cpu(server_pid) - cpu_before) / n
    for key, values in samples.items():
        out[key] = {"p50_ms": 1000 * pct(values, 50), "p95_ms": 1000 * pct(values, 95),
                    "mean_ms": 1000 * statistics.fmean(values)}
    return out


def timed(client: httpx.Client, method: str, path: str, expect: int, **kw) -> tuple[httpx.Response, float]:
    t = time.perf_counter()
    r = client.request(method, path, **kw)
    elapsed = time.perf_counter() - t
    if r.status_code != expect:
        raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
    return r, elapsed


def throughput(kind: str, ops: int, concurrency: int, profile: str | None) -> dict:
    with fresh_store(kind) as url:
        seed_people(url)
        result = {"db": kind, "concurrency": concurrency}

        with server("floor", url) as base:
            def floor_op(client):
                _, t = timed(client, "POST", "/floor", 201, json={"title": CASE_BODY["title"],
                                                                  "description": CASE_BODY["description"]})
                return {"floor": t}

            result["floor"] = run_load(ops, concurrency, lambda: httpx.Client(base_url=base, timeout=60), floor_op,
                                       server_pid=SERVER_PIDS[base])

        with server("app", url, profile) as base:
            token = httpx.post(f"{base}/api/v1/auth/token",
                               json={"username": "op1", "password": PASSWORD}).json()["access_token"]

            def client():
                return httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"})

            def create_dispatch(c):
                r, t1 = timed(c, "POST", "/api/v1/cases", 201, json=CASE_BODY)
                number = r.json()["number"]
                _, t2 = timed(c, "POST", f"/api/v1/cases/{number}/dispatch", 200, json={"units": ["water_supply"]})
                return {"create": t1, "dispatch": t2, "create+dispatch": t1 + t2}

            result["app"] = run_load(ops, concurrency, client, create_dispatch, server_pid=SERVER_PIDS[base])

            def create_dispatch_one_request(c):
                _, t = timed(c, "POST", "/api/v1/cases", 201,
                             json={**CASE_BODY, "dispatch": {"units": ["water_supply"]}})
                return {"create+dispatch in one request": t}

            result["app_one"] = run_load(ops, concurrency, client, create_dispatch_one_request,
                                         server_pid=SERVER_PIDS[base])
            bo_token = httpx.post(f"{base}/api/v1/auth/token",
                                  json={"username": "bo1", "password": PASSWORD}).json()["access_token"]
            verify = httpx.get(f"{base}/api/v1/audit/verify", headers={"Authorization": f"Bearer {bo_token}"},
                               timeout=600).json()
            assert verify["ok"], verify  # the concurrent load left the chain whole
            result["audit_events_checked"] = verify["checked"]
        floor_cost = 1 / result["floor"]["ops_per_s"]
        op_cost = 1 / result["app"]["ops_per_s"]
        result["ratio_throughput"] = op_cost / floor_cost
        result["ratio_p50"] = result["app"]["create+dispatch"]["p50_ms"] / result["floor"]["floor"]["p50_ms"]
        result["ratio_one_throughput"] = (1 / result["app_one"]["ops_per_s"]) / floor_cost
        result["ratio_one_p50"] = (result["app_one"]["create+dispatch in one request"]["p50_ms"]
                                   / result["floor"]["floor"]["p50_ms"])
        result["ratio_one_server_cpu"] = result["app_one"]["server_cpu_ms"] / result["floor"]["server_cpu_ms"]
        return result


# ---- overdue at scale --------------------------------------------------------------------------

OPEN = ("dispatched", "received", "notified")
KINDS = ("consultation", "suggestion", "complaint", "urgent_help")
CHANNELS = ("landline", "mobile", "web", "fax", "sms")


def generate(rng: random.Random, first_case_id: int, first_wo_id: int, count: int, now: datetime,
             unit_ids: list[int]) -> tuple[list[tuple], list[tuple]]:
    """`count` cases spread over the last two years, like a city's store after two years:
    old cases closed (1.5 % stuck open, hence overdue), the last three weeks still in progress."""
    cases, orders = [], []
    wo_id = first_wo_id
    span = 730 * 86400
    for case_id in range(first_case_id, first_case_id + count):
        accepted = now - timedelta(seconds=rng.random() * span)
        age_days = (now - accepted).total_seconds() / 86400
        n_orders = 2 if rng.random() < 0.15 else 1
        statuses = []
        for _ in range(n_orders):
            if age_days < 21:
                status = rng.choice(OPEN) if rng.random() < 0.7 else "reported"
            else:
                r = rng.random()
                status = rng.choice(OPEN) if r < 0.015 else ("cancelled" if r < 0.025 else "reported")
            statuses.append(status)
        case_open = any(s in OPEN for s in statuses)
        kind = rng.choice(KINDS)
        dispatched = accepted + timedelta(minutes=rng.randint(5, 600))
        due = dispatched + timedelta(days=rng.choice((7, 14, 14, 14)))
        cases.append((
            case_id, f"{accepted:%Y%m%d}-{case_id:07d}", kind, rng.choice(CHANNELS),
            "dispatched" if case_open else "closed", "", "", "", "某小区反映问题", "描述" * 20, "",
            accepted, False, True, True, False, False, False, dispatched, due,
            None if case_open else due - timedelta(days=1), None if case_open else due + timedelta(days=1),
            accepted, 1,
        ))
        role = "sole" if n_orders == 1 else "independent"
        for status in statuses:
            orders.append((
                wo_id, case_id, rng.choice(unit_ids), "work_order", role, status, 1, "", dispatched,
                dispatched + timedelta(days=2), due, dispatched + timedelta(days=2),
                due - timedelta(days=1) if status == "reported" else None, 0, "[]",
            ))
            wo_id += 1
    return cases, orders


CASE_COLS = ("id", "number", "kind", "channel", "status", "citizen_name", "citizen_phone", "citizen_id_number",
             "title", "description", "location", "accepted_at", "confidential", "callback_required", "assessed",
             "answered_directly", "callback_manual", "closed_provisionally", "dispatched_at", "deadline_at",
             "reported_at", "closed_at", "updated_at", "version")
WO_COLS = ("id", "case_id", "unit_id", "mode", "role", "status", "round", "instructions", "dispatched_at",
           "notify_due_at", "report_due_at", "return_due_at", "reported_at", "urge_count", "urged_thresholds")


def bulk_insert(engine, cases: list[tuple], orders: list[tuple]) -> None:
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            with raw.cursor() as cur:
                with cur.copy(f"COPY cases ({', '.join(CASE_COLS)}) FROM STDIN") as copy:
                    for row in cases:
                        copy.write_row(row)
                with cur.copy(f"COPY work_orders ({', '.join(WO_COLS)}) FROM STDIN") as copy:
                    for row in orders:
                        copy.write_row(row)
            raw.commit()
        else:
            def sqlite_row(row):  # stored as SQLAlchemy stores them: naive UTC text, 0/1
                return tuple(v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime)
                             else int(v) if isinstance(v, bool) else v for v in row)

            cur = raw.cursor()
            cur.execute("BEGIN")
            cur.executemany(f"INSERT INTO cases ({', '.join(CASE_COLS)}) VALUES ({', '.join('?' * len(CASE_COLS))})",
                            (sqlite_row(r) for r in cases))
            cur.executemany(f"INSERT INTO work_orders ({', '.join(WO_COLS)}) VALUES ({', '.join('?' * len(WO_COLS))})",
                            (sqlite_row(r) for r in orders))
            cur.execute("COMMIT")
    finally:
        raw.close()


def analyze(engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE cases"))
            conn.execute(text("ANALYZE work_orders"))
        else:
            conn.execute(text("ANALYZE"))
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()  # fold the bulk load's WAL into the database file
        try:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) work_orders"))


def explain(engine, stmt) -> str:
    compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}")).scalars().all()
            return "\n".join(rows)
        rows = conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")).all()
        return "\n".join(str(r[-1]) for r in rows)


def median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def overdue(kind: str, sizes: list[int], repeat: int, without_partial: bool = False) -> dict:
    from fastapi.testclient import TestClient
    from sqlalchemy import func, select

    from callcenter.api.app import create_app
    from callcenter.settings import Settings
    from ticketing import queries
    from ticketing.models import MemberUnit, WorkOrder
    from ticketing.store import make_session_factory

    out = {"db": kind, "sizes": {}}
    rng = random.Random(12345)
    now = datetime.now(UTC).replace(microsecond=0)
    with fresh_store(kind) as url:
        seed_people(url)
        engine = make_engine(url)
        if without_partial:  # the "before" of migration 0002, for comparison
            with engine.begin() as conn:
                conn.execute(text("DROP INDEX ix_wo_open_report_due"))
                conn.execute(text("DROP INDEX ix_wo_unit_open_report_due"))
        with engine.connect() as conn:
            unit_ids = list(conn.execute(select(MemberUnit.id)).scalars())
            water_id = conn.execute(select(MemberUnit.id).where(MemberUnit.code == "water_supply")).scalar_one()
        app = create_app(Settings(database_url=url, config_dir=CONFIG_DIR, state_dir=Path(tempfile.gettempdir())),
                         engine=engine)
        client = TestClient(app)
        def bearer(username):
            token = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD}).json()
            return {"Authorization": f"Bearer {token['access_token']}"}

        headers, unit_headers = bearer("bo1"), bearer("water1")
        page = queries.overdue_reports(now).order_by(WorkOrder.report_due_at, WorkOrder.id).limit(100)
        have, wo_next = 0, 1
        sessions = make_session_factory(engine)
        for size in sizes:
            t = time.perf_counter()
            while have < size:
                batch = min(50_000, size - have)
                cases, orders = generate(rng, have + 1, wo_next, batch, now, unit_ids)
                bulk_insert(engine, cases, orders)
                have += batch
                wo_next += len(orders)
            analyze(engine)
            load_s = time.perf_counter() - t

            def domain_page():
                with sessions() as s:
                    return s.execute(page).scalars().all()

            def api_page(who=headers, expect=100):
                r = client.get("/api/v1/work-orders", params={"due": "overdue", "limit": 100}, headers=who)
                assert r.status_code == 200 and len(r.json()) == expect, r.text[:300]

            with engine.connect() as conn:
                unit_overdue = conn.execute(select(func.count()).select_from(
                    queries.overdue_reports(now).join(MemberUnit, MemberUnit.id == WorkOrder.unit_id)
                    .where(MemberUnit.code == "water_supply").subquery())).scalar_one()

            def count_all():
                with engine.connect() as conn:
                    return conn.execute(select(func.count()).select_from(
                        queries.overdue_reports(now).subquery())).scalar_one()

            n_overdue = count_all()
            row = {
                "cases": have, "work_orders": wo_next - 1, "overdue": n_overdue, "load_s": round(load_s, 1),
                "query_ms": 1000 * median_time(domain_page, repeat),
                "api_ms": 1000 * median_time(api_page, max(5, repeat // 2)),
                "api_unit_ms": 1000 * median_time(lambda: api_page(unit_headers, min(100, unit_overdue)),
                                                  max(5, repeat // 2)),
                "count_ms": 1000 * median_time(count_all, max(3, repeat // 10)),
                "plan": explain(engine, page),
                "plan_unit": explain(engine, page.where(WorkOrder.unit_id == water_id)),
            }
            out["sizes"][size] = row
            print(f"[{kind}] {have:>9,} cases {row['work_orders']:>9,} work orders {n_overdue:>7,} overdue  "
                  f"page {row['query_ms']:.2f} ms  api {row['api_ms']:.1f} ms  api as one unit "
                  f"{row['api_unit_ms']:.1f} ms  count(all overdue) "
                  f"{row['count_ms']:.1f} ms  (load {load_s:.0f} s)", flush=True)
            print("    " + row["plan"].replace("\n", "\n    "), flush=True)
            print("    one unit:\n    " + row["plan_unit"].replace("\n", "\n    "), flush=True)
        client.close()
        engine.dispose()
    first, last = out["sizes"][sizes[0]], out["sizes"][sizes[-1]]
    out["ratio_query"] = last["query_ms"] / first["query_ms"]
    out["ratio_api"] = last["api_ms"] / first["api_ms"]
    out["ratio_api_unit"] = last["api_unit_ms"] / first["api_unit_ms"]
    return out


# ---- command line ------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--ops", type=int, default=600)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--profile", help="pyinstrument HTML report of the app server to this path")
    p = sub.add_parser("overdue")
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--repeat", type=int, default=40)
    p.add_argument("--without-partial-index", action="store_true",
                   help="drop migration 0002's partial indexes first (to see the before)")
    p = sub.add_parser("_serve")
    p.add_argument("which", choices=("floor", "app"))
    p.add_argument("url")
    p.add_argument("port", type=int)
    p.add_argument("--profile")
    args = parser.parse_args()

    if args.cmd == "_serve":
        serve_main(args.which, args.url, args.port, args.profile)
        return
    os.environ["STORE_BENCH_STATE_DIR"] = tempfile.mkdtemp(prefix="store-bench-")
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}", flush=True)
    for kind in kinds:
        if args.cmd == "throughput":
            r = throughput(kind, args.ops, args.concurrency, args.profile)
            f, a = r["floor"], r["app"]
            print(f"[{kind}] concurrency {r['concurrency']}, {a['n']} ops each")
            print(f"  floor (1 insert)      {f['ops_per_s']:7.1f} req/s   p50 {f['floor']['p50_ms']:6.2f} ms"
                  f"   p95 {f['floor']['p95_ms']:6.2f} ms")
            for key in ("create", "dispatch", "create+dispatch"):
                print(f"  {key:<21} {'':>7}         p50 {a[key]['p50_ms']:6.2f} ms   p95 {a[key]['p95_ms']:6.2f} ms")
            print(f"  create+dispatch       {a['ops_per_s']:7.1f} ops/s ({2 * a['ops_per_s']:.1f} req/s)")
            print(f"  cost ratio (op/floor): throughput {r['ratio_throughput']:.2f}x   p50 {r['ratio_p50']:.2f}x"
                  f"   audit chain ok ({r['audit_events_checked']} events)", flush=True)
            one = a1 = r["app_one"]
            print(f"  create+dispatch in one request {one['ops_per_s']:7.1f} ops/s   "
                  f"p50 {a1['create+dispatch in one request']['p50_ms']:6.2f} ms   "
                  f"p95 {a1['create+dispatch in one request']['p95_ms']:6.2f} ms")
            print(f"  cost ratio (one request/floor): throughput {r['ratio_one_throughput']:.2f}x   "
                  f"p50 {r['ratio_one_p50']:.2f}x   server CPU {r['ratio_one_server_cpu']:.2f}x "
                  f"({one['server_cpu_ms']:.2f} / {f['server_cpu_ms']:.2f} ms)", flush=True)
            print(json.dumps(r, default=str), file=sys.stderr)
        else:
            r = overdue(kind, [int(s) for s in args.sizes.split(",")], args.repeat, args.without_partial_index)
            print(f"[{kind}] largest/smallest: page query {r['ratio_query']:.2f}x, API {r['ratio_api']:.2f}x, "
                  f"API as one unit {r['ratio_api_unit']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
