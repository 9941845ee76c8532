#!/usr/bin/env python3
"""A month's report on a city with 1 M cases and 5 M call records (issue 12 item 3); run by hand,
not part of the test suite.

Builds the city once per store and size (cached: a SQLite file under var/bench-figures/, a
PostgreSQL schema `bench_fig_<key>` in $CALLCENTER_TEST_PG_URL's database; a half-built one is
never used: each is built under a temporary name and renamed when complete), then times "a month's
report": every figure of ticketing.figures for one month — intake, closing, every case and
work-order rate for the city and for every member unit (`rate_by_unit`), the work-order summary,
the queue figures, per hour of day and per operator, and the voice menu's. On PostgreSQL its
independent reads run side by side (ticketing.figures.concurrent: the wall time uses the server's
cores), as `monthly_report`'s do.

Baseline in the same run: the same report with every figure from the raw rows (no daily rollup) and
the per-unit rates read one unit at a time (`rate(name, period, unit)` in a loop, what callers did
before `rate_by_unit`). Reported: the report's median time against the 1 s goal, and report /
baseline. Before timing, the month's days of the rate and queue rollups (ticketing.figures.rollup,
ticketing.figures.queue_rollup) are computed where missing (`--no-rollup`: not), as `callcenter
stats rebuild` would.

    .venv/bin/python benchmarks/figures_month.py --db both                        # 1 M cases, 5 M calls
    .venv/bin/python benchmarks/figures_month.py --db sqlite --cases 20000 --calls 100000 --explain
    .venv/bin/python benchmarks/figures_month.py --db both --rebuild                # drop the cache first

The city: two years (2024-12-01 .. 2026-12-01, Shanghai) of cases over the configured units and
categories (kinds, channels, statuses, rejections, direct answers, back-office dispatches, one to
three work orders, returns and re-dispatches, extensions, urges, callback attempts, ratings,
R7.3c cases), and inbound calls through the voice menu and the operator queue with the AMI queue
events the figures read (queued, operator_connected with holdtime, operator_completed with
talktime, queue_abandoned), plus outbound callback calls. The month timed is 2026-11.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text

from benchmarks.figures_city import SH, TABLES, Shape, build_city
from ticketing.models import Case, MemberUnit

PG_BASE_URL = os.environ.get("CALLCENTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CACHE_DIR = ROOT / "var" / "bench-figures"


# ---- the report --------------------------------------------------------------------------------

def month_report(session, period, *, per_unit: str = "grouped", use_rollup: bool = True) -> dict:
    """Every figure of ticketing.figures for the period: the city's, every unit's rates, the
    queue per hour and per operator. per_unit="loop" reads each unit's rates one unit at a time;
    use_rollup=False reads every rate from the raw rows."""
    from ticketing.figures import CallFigures, CaseFigures, WorkOrderFigures
    from ticketing.figures.concurrent import side_by_side
    cases, orders = CaseFigures(session, use_rollup=use_rollup), WorkOrderFigures(session, use_rollup=use_rollup)
    calls = CallFigures(session, use_rollup=use_rollup)
    # the independent reads side by side on PostgreSQL (each on a pooled connection of its own)
    first = side_by_side(session, {
        **cases.pass_jobs(period), **orders.pass_jobs(period), "queue": calls.tally_job(period),
        "intake": lambda s: CaseFigures(s, use_rollup=use_rollup).intake(period),
        "closing": lambda s: CaseFigures(s, use_rollup=use_rollup).closing(period),
        "work_orders": lambda s: WorkOrderFigures(s, use_rollup=use_rollup).summary(period),
        "menu": lambda s: CallFigures(s, use_rollup=use_rollup).menu(period)})
    out: dict = {"intake": first["intake"], "closing": first["closing"], "work_orders": first["work_orders"],
                 "rates": {}, "units": {}}
    codes = list(session.execute(select(MemberUnit.code).order_by(MemberUnit.code)).scalars())
    for reader in (cases, orders):
        for name in reader.definitions:
            out["rates"][name] = reader.rate(name, period)
            if per_unit == "loop":
                out["units"][name] = {code: reader.rate(name, period, code) for code in codes}
            else:
                out["units"][name] = reader.rate_by_unit(name, period)
    out["queue"] = calls.queue(period)
    out["by_hour"] = calls.by_hour(period)
    out["by_operator"] = calls.by_operator(period)
    out["menu"] = first["menu"]
    return out


def timed(fn: Callable[[], object], repeat: int, warm: bool = True) -> tuple[float, list[float], float]:
    """Median wall time, every run's, and the median CPU time of this process (on SQLite the
    database's work too: the figure a loaded machine disturbs least)."""
    if warm:
        fn()  # warm the caches (the first report after a restart reads from disk)
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), times, statistics.median(cpu)


def profile_parts(session, period) -> dict[str, float]:
    """Each figure of the report on its own (where the time goes)."""
    from ticketing.figures import CallFigures, CaseFigures, WorkOrderFigures
    cases, orders, calls = CaseFigures(session), WorkOrderFigures(session), CallFigures(session)
    parts: dict[str, Callable[[], object]] = {
        "intake": lambda: cases.intake(period), "closing": lambda: cases.closing(period),
        "work_orders.summary": lambda: orders.summary(period)}
    for reader in (cases, orders):
        for name in reader.definitions:
            parts[f"rate {name}"] = lambda r=reader, n=name: r.rate(n, period)
            parts[f"rate_by_unit {name}"] = lambda r=reader, n=name: r.rate_by_unit(n, period)
    parts.update({"queue": lambda: calls.queue(period), "by_hour": lambda: calls.by_hour(period),
                  "by_operator": lambda: calls.by_operator(period), "menu": lambda: calls.menu(period)})
    out = {}
    for label, fn in parts.items():
        t0 = time.perf_counter()
        fn()
        out[label] = time.perf_counter() - t0
    return out


# ---- cached stores -------------------------------------------------------------------------------

def _progress(label: str) -> Callable[[int, int], None]:
    started = time.perf_counter()

    def show(done: int, total: int) -> None:
        print(f"\r  {label}: day {done}/{total}, {time.perf_counter() - started:.0f} s", end="", file=sys.stderr,
              flush=True)
        if done == total:
            print(file=sys.stderr)
    return show


def _prepare(url: str) -> None:
    """Migrate, seed the configured units (audited, under the benchmark's own audit key)."""
    from callcenter.audit_vault import install
    from ticketing.domain import Domain
    from ticketing.seed import seed_units
    from ticketing.store import (
        make_engine,
        make_session_factory,
        session_scope,
        upgrade,
    )
    upgrade(url)
    install(CACHE_DIR / "state")
    engine = make_engine(url)
    try:
        with session_scope(make_session_factory(engine)) as s:
            seed_units(s, Domain.load(ROOT / "config").city, datetime(2024, 11, 30, tzinfo=UTC))
    finally:
        engine.dispose()


def _finish(engine) -> None:
    """Statistics for the planner after the bulk load; on SQLite, the WAL folded in."""
    if engine.dialect.name == "postgresql":  # this schema's tables only (others share the database)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM ANALYZE {', '.join([*TABLES, 'queue_entries'])}"))
        return
    raw = engine.raw_connection()
    try:
        raw.execute("ANALYZE")
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def _ensure_indexes(url: str) -> None:
    """Every index the models and the figures declare, on a city cached before one was added."""
    import ticketing.figures  # noqa: F401 (its covering indexes)
    from ticketing.models import Base
    from ticketing.store import make_engine
    engine = make_engine(url)
    try:
        for table in Base.metadata.sorted_tables:
            for index in table.indexes:
                index.create(engine, checkfirst=True)
    finally:
        engine.dispose()


def sqlite_store(shape: Shape, rebuild: bool, after_build: Callable | None = None) -> str:
    from ticketing.store import make_engine, upgrade
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"city-{shape.key()}.db"
    if rebuild and path.exists():
        path.unlink()
    if not path.exists():
        building = path.with_suffix(".building")
        for leftover in CACHE_DIR.glob(building.name + "*"):
            leftover.unlink()
        url = f"sqlite:///{building}"
        _prepare(url)
        engine = make_engine(url)
        try:
            build_city(engine, shape, _progress("sqlite"), stale_triggers=False)
            if after_build:
                after_build(engine)
            _finish(engine)
        finally:
            engine.dispose()
        building.rename(path)  # complete: only now is it the cached city
    upgrade(f"sqlite:///{path}")  # a city cached before the latest migration
    _ensure_indexes(f"sqlite:///{path}")
    return f"sqlite:///{path}"


def pg_store(shape: Shape, rebuild: bool, after_build: Callable | None = None) -> str:
    from ticketing.store import make_engine, upgrade
    schema = f"bench_fig_{shape.key()}"
    admin = make_engine(PG_BASE_URL)
    try:
        with admin.begin() as conn:
            if rebuild:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            exists = conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}).first()
            if not exists:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}_building" CASCADE'))
                conn.execute(text(f'CREATE SCHEMA "{schema}_building"'))
        if not exists:
            url = f"{PG_BASE_URL}?options=-csearch_path%3D{schema}_building"
            _prepare(url)
            engine = make_engine(url)
            try:
                build_city(engine, shape, _progress("postgresql"), stale_triggers=False)
                if after_build:
                    after_build(engine)
            finally:
                engine.dispose()
            with admin.begin() as conn:
                conn.execute(text(f'ALTER SCHEMA "{schema}_building" RENAME TO "{schema}"'))
            engine = make_engine(f"{PG_BASE_URL}?options=-csearch_path%3D{schema}")
            try:
                _finish(engine)
            finally:
                engine.dispose()
    finally:
        admin.dispose()
    upgrade(f"{PG_BASE_URL}?options=-csearch_path%3D{schema}")  # a city cached before the latest migration
    _ensure_indexes(f"{PG_BASE_URL}?options=-csearch_path%3D{schema}")
    return f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"


def ensure_rollup(sessions, period) -> tuple[int, float]:
    """The daily rollups of the rates (ticketing.figures.rollup) and of the queue
    (ticketing.figures.queue_rollup) computed for the month's days that lack them (what `callcenter
    stats rebuild` does for every day; a city cached before a rollup has none). Returns the rate
    days computed, the seconds it took, and the same for the queue days."""
    from ticketing.figure_days_model import FigureDay
    from ticketing.figures import CallFigures, Thresholds
    from ticketing.figures.queue_rollup import params_of, refresh_queue_days
    from ticketing.figures.rollup import CITY, refresh_days, rollup_readers
    from ticketing.queue_days_model import DAY_ROW, QueueDay
    from ticketing.store import session_scope
    t = Thresholds()
    days = [period.since.astimezone(t.tz).date() + timedelta(days=i)
            for i in range((period.until - period.since).days + 1)]
    days = [d for d in days if datetime.combine(d, datetime.min.time(), t.tz) < period.until]
    t0 = time.perf_counter()
    with session_scope(sessions) as s:
        have = set(s.execute(select(FigureDay.day).where(FigureDay.zone == t.timezone, FigureDay.unit_id == CITY,
                                                          FigureDay.day.in_(days)).distinct()).scalars())
        missing = [d for d in days if d not in have]
        if missing:
            refresh_days(rollup_readers(s, t), missing)
    rates_s = time.perf_counter() - t0
    with session_scope(sessions) as s:  # the queue's rollup (ticketing.figures.queue_rollup)
        have = set(s.execute(select(QueueDay.day).where(QueueDay.params == params_of(t), QueueDay.day.in_(days),
                                                         QueueDay.hour == DAY_ROW, QueueDay.operator == "")).scalars())
        queue_missing = [d for d in days if d not in have]
        if queue_missing:
            refresh_queue_days(CallFigures(s, t, use_rollup=False), queue_missing)
    return len(missing), rates_s, len(queue_missing), time.perf_counter() - t0 - rates_s


def run(kind: str, shape: Shape, month: tuple[int, int], repeat: int, rebuild: bool, parts: bool,
        rollup: bool = True, with_baseline: bool = True) -> dict:
    from ticketing.figures import Period
    from ticketing.store import make_engine, make_session_factory
    t0 = time.perf_counter()
    url = (sqlite_store if kind == "sqlite" else pg_store)(shape, rebuild)
    build_s = time.perf_counter() - t0
    engine = make_engine(url)
    period = Period.month(*month)
    try:
        sessions = make_session_factory(engine)
        rolled = ensure_rollup(sessions, period) if rollup else (0, 0.0, 0, 0.0)
        with sessions() as s:  # (on SQLite every transaction holds the write lock: one at a time)
            sizes = {name: s.execute(select(func.count()).select_from(m)).scalar() for name, m in TABLES.items()}
            in_month = s.execute(select(func.count()).select_from(Case).where(
                Case.accepted_at >= period.since, Case.accepted_at < period.until)).scalar()

        def report():
            with sessions() as r:
                month_report(r, period)

        def baseline():
            with sessions() as r:
                month_report(r, period, per_unit="loop", use_rollup=False)

        load = os.getloadavg()[0]
        report_s, report_all, report_cpu = timed(report, repeat)
        base_s, base_cpu = float("nan"), float("nan")
        if with_baseline:
            base_s, _base_all, base_cpu = timed(baseline, max(1, repeat // 3), warm=False)  # the report warmed them
        result = {"db": kind, "sizes": sizes, "cases_in_month": in_month, "store_ready_s": round(build_s, 1),
                  "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1),
                  "rollup_days_computed": rolled[0], "rollup_compute_s": round(rolled[1], 1),
                  "queue_rollup_days_computed": rolled[2], "queue_rollup_compute_s": round(rolled[3], 1),
                  "report_s": round(report_s, 4), "report_runs": [round(x, 4) for x in report_all],
                  "report_cpu_s": round(report_cpu, 4), "baseline_s": round(base_s, 4),
                  "baseline_cpu_s": round(base_cpu, 4), "ratio": round(report_s / base_s, 3),
                  "goal_1s": "met" if report_s < 1.0 else "NOT met"}
        if parts:
            with sessions() as s:
                result["parts"] = {k: round(v, 4) for k, v in
                                   sorted(profile_parts(s, period).items(), key=lambda kv: -kv[1])}
    finally:
        engine.dispose()
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--cases", type=int, default=1_000_000)
    p.add_argument("--calls", type=int, default=5_000_000)
    p.add_argument("--days", type=int, default=730)
    p.add_argument("--month", default="2026-11", help="YYYY-MM, the month reported")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--rebuild", action="store_true", help="build the city again even if cached")
    p.add_argument("--parts", action="store_true", help="also time each figure on its own")
    p.add_argument("--build-only", action="store_true", help="build (or find) the cached city, time nothing")
    p.add_argument("--no-baseline", action="store_true", help="time the report only (no raw per-unit loop)")
    p.add_argument("--no-rollup", action="store_true",
                   help="leave the month's rate rollup uncomputed (every rate from the raw rows; a rollup "
                        "computed by an earlier run stays: clear figure_days to time the raw path)")
    a = p.parse_args(argv)
    shape = Shape(cases=a.cases, calls=a.calls, days=a.days,
                  start=datetime(2026, 12, 1, tzinfo=SH) - timedelta(days=a.days))
    year, month = (int(x) for x in a.month.split("-"))
    results = {}
    for kind in (("sqlite", "postgresql") if a.db == "both" else (a.db,)):
        if a.build_only:
            print((sqlite_store if kind == "sqlite" else pg_store)(shape, a.rebuild))
            continue
        results[kind] = run(kind, shape, (year, month), a.repeat, a.rebuild, a.parts, rollup=not a.no_rollup,
                            with_baseline=not a.no_baseline)
        print(json.dumps(results[kind], indent=1, ensure_ascii=False), flush=True)
    return results


if __name__ == "__main__":
    main()
