"""Callback scheduler throughput: 1,000 and 10,000 due 回访 callbacks placed into Local channels.

    .venv/bin/python benchmarks/callback_throughput.py [--sizes 1000 10000] [--concurrency 4 32]

Each size gets a fresh SQLite store with that many reported cases due for their callback. The
phones are `[citizen-phones]` numbers starting with 2 (busy): every callback is one real Originate
through `[outbound-callback]` (AstDB ledger, Dial of a Local channel, Busy), and with
max_attempts=1 the busy result puts the case on the manual list (workflow + audit chain), so each
callback does its full bookkeeping once. The runner keeps `concurrency` calls in flight.

Reported per run: wall time, callbacks/s, the scheduler process's CPU per callback (all its
threads: planning, claiming, AMI, bookkeeping), Asterisk's CPU per callback (from /proc), the
mean Originate round trip, the rate the cap allows (concurrency / round trip), peak in-flight
calls, and the process's RSS after the run and its growth during it. Needs the running Asterisk
(`callcenter asterisk start`).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from callback import attempts as A  # noqa: E402
from callback.runner import AMI_EVENTS, CallbackRunner, RunnerOptions  # noqa: E402
from callcenter.ami.client import AMIClient  # noqa: E402
from callcenter.pbx.provision import running_pids  # noqa: E402
from callcenter.settings import get_settings  # noqa: E402
from ticketing.domain import Domain  # noqa: E402
from ticketing.enums import CaseKind, CaseStatus, Channel  # noqa: E402
from ticketing.models import Case  # noqa: E402
from ticketing.store import make_engine, make_session_factory, session_scope, upgrade  # noqa: E402

NOW = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 Shanghai: calling hours


def rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed_cases(sessions, n: int) -> None:
    deadline = NOW - timedelta(hours=1)
    rows = [{
        "number": f"20260304-{i:06d}", "kind": CaseKind.CONSULTATION, "channel": Channel.MOBILE,
        "status": CaseStatus.REPORTED, "citizen_phone": f"2{i:010d}", "title": "咨询", "description": "bench",
        "accepted_at": NOW - timedelta(days=3), "reported_at": deadline, "deadline_at": deadline,
        "callback_due_at": deadline + timedelta(days=2), "close_due_at": deadline + timedelta(days=2),
        "callback_required": True, "confidential": False, "assessed": True, "answered_directly": False,
        "callback_manual": False, "closed_provisionally": False, "updated_at": NOW, "version": 1,
    } for i in range(1, n + 1)]
    with session_scope(sessions) as s:
        for start in range(0, n, 2000):
            s.execute(insert(Case), rows[start:start + 2000])


async def run_one(size: int, concurrency: int, workdir: Path) -> dict:
    settings = get_settings()
    url = f"sqlite:///{workdir / f'bench-{size}-{concurrency}.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    base = Domain.load(settings.config_dir)
    policy = dataclasses.replace(base.policy, callback=dataclasses.replace(
        base.policy.callback, concurrency=concurrency, max_attempts=1))
    t_clock = time.monotonic()
    domain = Domain(policy=policy, calendar=base.calendar, city=base.city,
                    clock=lambda: NOW + timedelta(seconds=time.monotonic() - t_clock))
    seed_cases(sessions, size)

    ami = AMIClient.from_settings(settings, events=AMI_EVENTS)
    await ami.start()
    latencies: list[float] = []
    runner = CallbackRunner(domain, sessions, ami, RunnerOptions(channel_prefix=f"bench{uuid.uuid4().hex[:6]}-",
                                                                 settle_seconds=0),
                            on_result=lambda r: latencies.append(r.dial_seconds))
    peak = 0

    async def sample():
        nonlocal peak
        while True:
            peak = max(peak, runner.in_flight)
            await asyncio.sleep(0.01)

    ast_pid = running_pids(settings)[0]
    gc.collect()
    rss0 = rss_kb()
    ast0, cpu0, t0 = proc_cpu_seconds(ast_pid), time.process_time(), time.perf_counter()
    sampler = asyncio.create_task(sample())
    stats = await runner.drain(timeout=3600)
    wall = time.perf_counter() - t0
    cpu, ast = time.process_time() - cpu0, proc_cpu_seconds(ast_pid) - ast0
    sampler.cancel()
    rss1 = rss_kb()
    await runner.stop()
    await ami.stop()
    with session_scope(sessions) as s:
        counts = A.counts(s)
        manual = len(A.manual_list(s, limit=size + 1))
    engine.dispose()
    placed = stats.claimed
    mean_rt = sum(latencies) / len(latencies) if latencies else float("nan")
    return {
        "size": size, "concurrency": concurrency, "placed": placed, "outcomes": stats.outcomes, "states": counts,
        "manual_list": manual, "wall_s": round(wall, 2), "callbacks_per_s": round(placed / wall, 1),
        "scheduler_cpu_ms_per_callback": round(cpu * 1000 / placed, 2),
        "scheduler_cpu_share_of_one_core": round(cpu / wall, 2),
        "asterisk_cpu_ms_per_callback": round(ast * 1000 / placed, 2),
        "originate_round_trip_ms": round(mean_rt * 1000, 1),
        "cap_allows_per_s": round(concurrency / mean_rt, 1),
        "peak_in_flight": peak, "rss_mb_after": round(rss1 / 1024, 1), "rss_growth_mb": round((rss1 - rss0) / 1024, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 32])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="cb-bench-") as tmp:
        for conc in args.concurrency:
            for size in args.sizes:
                res = asyncio.run(run_one(size, conc, Path(tmp)))
                results.append(res)
                print(json.dumps(res, ensure_ascii=False) if args.json else
                      f"N={res['size']:>6} cap={res['concurrency']:>3}: {res['callbacks_per_s']:>6}/s "
                      f"(cap allows {res['cap_allows_per_s']}/s, round trip {res['originate_round_trip_ms']} ms, "
                      f"peak in flight {res['peak_in_flight']}); scheduler CPU {res['scheduler_cpu_ms_per_callback']} "
                      f"ms/callback ({res['scheduler_cpu_share_of_one_core']} core), Asterisk "
                      f"{res['asterisk_cpu_ms_per_callback']} ms/callback; RSS {res['rss_mb_after']} MB "
                      f"(+{res['rss_growth_mb']} MB during the run); placed {res['placed']}, manual {res['manual_list']}",
                      flush=True)


if __name__ == "__main__":
    main()
