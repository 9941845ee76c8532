#!/usr/bin/env python3
"""The voice menu's server CPU per call without Asterisk: emulated callers (agi.testing.FakeAsterisk)
press 1 on the default menu, against the same server subprocess as benchmarks/ivr_menu_vs_dialplan.py
(`serve`: fresh SQLite file, clock in service hours, INFO logging).

Reports the server process's CPU (user+sys from /proc) per call for the measured calls (after a
warm-up), and checks that every call left one call record queued/consultation with its case.

    .venv/bin/python benchmarks/ivr_menu_emulated.py --calls 600 --inflight 30 [--profile FILE]
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from agi.testing import FakeAsterisk, pressing  # noqa: E402

MENU = PROJECT / "benchmarks" / "ivr_menu_vs_dialplan.py"


def cpu_seconds(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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

    from ticketing import audit
    from ticketing.models import Call, Case
    from ticketing.store import make_engine, make_session_factory

    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        calls = s.execute(select(func.count()).select_from(Call).where(
            Call.outcome == "queued", Call.outcome_reason == "consultation", Call.case_id.is_not(None))).scalar_one()
        cases = s.execute(select(func.count()).select_from(Case).where(Case.created_by_call_id.is_not(None))).scalar_one()
        chain = audit.verify(s)
    engine.dispose()
    return (f"{calls} of {expected} calls queued/consultation with a case; {cases} cases created by calls; "
            f"audit chain {'intact' if chain.ok else 'BROKEN: ' + '; '.join(chain.problems[:3])} ({chain.checked} events)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--inflight", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--port", type=int, default=4591)
    parser.add_argument("--profile", default="", help="cProfile the server into this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ivr-emulated-") as tmp:
        db_url = f"sqlite:///{tmp}/bench.db"
        argv = [sys.executable, str(MENU), "serve", "--db", db_url, "--port", str(args.port)]
        if args.profile:
            argv += ["--profile", args.profile]
        with open(Path(tmp) / "server.log", "w") as log_file:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log_file, text=True, cwd=PROJECT)
        try:
            line = proc.stdout.readline()
            if "READY" not in line:
                raise SystemExit(f"server did not start: {line!r}")
            asyncio.run(drive(args.port, 0, args.warmup, args.inflight))
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            asyncio.run(drive(args.port, args.warmup, args.calls, args.inflight))
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
        print(f"server CPU {1000 * (cpu1 - cpu0) / args.calls:.2f} ms/call, {args.calls / (t1 - t0):.0f} calls/s "
              f"({args.calls} calls, {args.inflight} in flight)")
        print(check(db_url, args.calls + args.warmup))


if __name__ == "__main__":
    main()
