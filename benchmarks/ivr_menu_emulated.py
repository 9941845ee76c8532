#!/usr/bin/env python3
"""The voice menu's server CPU per call without Asterisk: emulated callers (agi.testing.FakeAsterisk)
press 1 on the default menu, against the same server subprocess as benchmarks/ivr_menu_vs_dialplan.py
(`serve`: fresh SQLite file or, with `--postgres URL`, a fresh PostgreSQL schema; clock in service hours, INFO logging).

Reports the server process's CPU (user+sys from /proc) per call for the measured calls (after a
warm-up), and checks that every call left one call record queued/consultation with its case.

    .venv/bin/python benchmarks/ivr_menu_emulated.py --calls 600 --inflight 30 [--profile FILE]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from agi.testing import FakeAsterisk, pressing  # noqa: E402

MENU = PROJECT / "benchmarks" / "ivr_menu_vs_dialplan.py"


def cpu_seconds(pid: int) -> tuple[float, float]:
    """The process's user and system CPU seconds."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def database_cpu_seconds() -> float:
    """User+system CPU seconds of every PostgreSQL process on this machine (its backends serve the
    server's sessions): the store's side of a call's cost, which the server's own CPU leaves out."""
    import os

    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        if "(postgres)" not in stat:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def drive(port: int, first: int, count: int, inflight: int) -> None:
    sem = asyncio.Semaphore(inflight)

    async def one(i: int) -> None:
        async with sem:
            fake = FakeAsterisk("127.0.0.1", port, "ivr/main", query={"prompts": "bench-silent"},
                                args=[f"1900000000.{i}"], callerid=f"139{i:08d}", uniqueid=f"1900000001.{i}")
            await fake.connect()
            try:
                await fake.run(pressing("1"), timeout=30)
            finally:
                await fake.close()

    await asyncio.gather(*(one(i) for i in range(first, first + count)))


def check(db_url: str, expected: int) -> str:
    from sqlalchemy import func, select

    from ticketing.models import AuditEvent, Call, Case
    from ticketing.store import make_engine, make_session_factory

    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        calls = s.execute(select(func.count()).select_from(Call).where(
            Call.outcome == "queued", Call.outcome_reason == "consultation", Call.case_id.is_not(None))).scalar_one()
        cases = s.execute(select(func.count()).select_from(Case).where(Case.created_by_call_id.is_not(None))).scalar_one()
        events = s.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    engine.dispose()
    return (f"{calls} of {expected} calls queued/consultation with a case; {cases} cases created by calls; "
            f"{events} audit events (the chain's key is the server's: not verified here)")


@contextlib.contextmanager
def fresh_store(postgres: str, tmp: str):
    """A fresh SQLite file in `tmp`, or a fresh schema in the PostgreSQL database `postgres`."""
    if not postgres:
        yield f"sqlite:///{tmp}/bench.db"
        return
    from sqlalchemy import text

    from ticketing.store import make_engine

    schema = f"bench_emulated_{uuid.uuid4().hex[:10]}"
    admin = make_engine(postgres)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{postgres}{'&' if '?' in postgres else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--inflight", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--port", type=int, default=4591)
    parser.add_argument("--profile", default="", help="cProfile the server into this file")
    parser.add_argument("--db-threads", default="default", choices=("default", "thread", "inline", "one"),
                        help="where the server runs its transactions (ivr_menu_vs_dialplan.py --help)")
    parser.add_argument("--postgres", default="", help="run on PostgreSQL: a fresh schema in this database "
                        "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test), dropped afterwards")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ivr-emulated-") as tmp, fresh_store(args.postgres, tmp) as db_url:
        argv = [sys.executable, str(MENU), "serve", "--db", db_url, "--port", str(args.port),
                "--db-threads", args.db_threads]
        if args.profile:
            argv += ["--profile", args.profile]
        with open(Path(tmp) / "server.log", "w") as log_file:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log_file, text=True, cwd=PROJECT)
        try:
            line = proc.stdout.readline()
            if "READY" not in line:
                raise SystemExit(f"server did not start: {line!r}")
            asyncio.run(drive(args.port, 0, args.warmup, args.inflight))
            cpu0, db0, t0 = cpu_seconds(proc.pid), database_cpu_seconds(), time.monotonic()
            asyncio.run(drive(args.port, args.warmup, args.calls, args.inflight))
            cpu1, db1, t1 = cpu_seconds(proc.pid), database_cpu_seconds(), time.monotonic()
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
        user, system = ((b - a) * 1000 / args.calls for a, b in zip(cpu0, cpu1))
        print(f"server CPU {user + system:.2f} ms/call (user {user:.2f}, system {system:.2f}), "
              f"{args.calls / (t1 - t0):.0f} calls/s "
              f"({args.calls} calls, {args.inflight} in flight)")
        if args.postgres:  # ended backends (a dropped connection's) are missed: a lower bound
            print(f"PostgreSQL processes' CPU {(db1 - db0) * 1000 / args.calls:.2f} ms/call")
        print(check(db_url, args.calls + args.warmup))


if __name__ == "__main__":
    main()
