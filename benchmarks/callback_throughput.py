"""Callback scheduler throughput: 1,000 and 10,000 due 回访 callbacks placed into Local channels.

    .venv/bin/python benchmarks/callback_throughput.py [--sizes 1000 10000] [--concurrency 4 32]
        [--answered 64] [--answered-concurrency 4 32]

Each size gets a fresh SQLite store with that many reported cases due for their callback. The
phones are `[citizen-phones]` numbers starting with 2 (busy): every callback is one real Originate
through `[outbound-callback]` (AstDB ledger, Dial of a Local channel, Busy), and with
max_attempts=1 the busy result puts the case on the manual list (workflow + audit chain), so each
callback does its full bookkeeping once. The runner keeps `concurrency` calls in flight.

`--answered N`: also N real surveys per concurrency of `--answered-concurrency`: phones starting
with 5 answer and press 1 after about a second; our FastAGI server (in this process, holding the
AGI port lock shared with the test sessions) runs the survey, stores the rating and closes the case.

Reported per run: wall time, callbacks/s, the rate the cap allows (concurrency / mean time a call
holds its line: the Originate round trip for a busy line, Originate to hangup for a survey) and
the achieved share of it, the scheduler process's CPU per callback (all its threads: planning,
claiming, AMI, bookkeeping; with --answered also the survey's AGI server), Asterisk's CPU per
callback (from /proc), store transactions, peak in-flight calls, the process's RSS after the run
and its growth during it, and what limited the rate. Needs the running Asterisk
(`callcenter asterisk start`).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from sqlalchemy import func, insert, select  # noqa: E402

from callback import attempts as A  # noqa: E402
from callback.runner import CallbackRunner, RunnerOptions  # noqa: E402
from callcenter.callbacks import AmiCallbackPbx  # noqa: E402
from callcenter.pbx.process import running_pids  # noqa: E402
from callcenter.settings import get_settings  # noqa: E402
from tests.live.helpers import agi_port_lock  # noqa: E402
from ticketing import audit  # noqa: E402
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


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs: how busy the machine was, whoever used it."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def seed_cases(sessions, n: int, prefix: str = "2") -> None:
    deadline = NOW - timedelta(hours=1)
    rows = [{
        "number": f"20260304-{i:06d}", "kind": CaseKind.CONSULTATION, "channel": Channel.MOBILE,
        "status": CaseStatus.REPORTED, "citizen_phone": f"{prefix}{i:010d}", "title": "咨询", "description": "bench",
        "accepted_at": NOW - timedelta(days=3), "reported_at": deadline, "deadline_at": deadline,
        "callback_due_at": deadline + timedelta(days=2), "close_due_at": deadline + timedelta(days=2),
        "callback_required": True, "confidential": False, "assessed": True, "answered_directly": False,
        "callback_manual": False, "closed_provisionally": False, "updated_at": NOW, "version": 1,
    } for i in range(1, n + 1)]
    with session_scope(sessions) as s:
        for start in range(0, n, 2000):
            s.execute(insert(Case), rows[start:start + 2000])


async def run_one(size: int, concurrency: int, workdir: Path, *, answered: bool = False, max_attempts: int = 1) -> dict:
    settings = get_settings()
    url = f"sqlite:///{workdir / f'bench-{size}-{concurrency}-{int(answered)}.db'}"
    upgrade(url)
    # A1: the throwaway store's audit chain sealed with a throwaway key (callcenter.audit_vault)
    from callcenter.audit_vault import install as install_audit_vault

    install_audit_vault(str(workdir / f"audit-{size}-{concurrency}"))
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    base = Domain.load(settings.config_dir)
    policy = dataclasses.replace(base.policy, callback=dataclasses.replace(
        base.policy.callback, concurrency=concurrency, max_attempts=max_attempts))
    t_clock = time.monotonic()
    domain = Domain(policy=policy, calendar=base.calendar, city=base.city,
                    clock=lambda: NOW + timedelta(seconds=time.monotonic() - t_clock))
    seed_cases(sessions, size, "5" if answered else "2")
    with contextlib.ExitStack() as stack:
        if answered:
            stack.enter_context(agi_port_lock(settings))  # other sessions' tests serve that port too
            seed_units_for(sessions, domain)
        return await _measure(size, concurrency, settings, domain, engine, sessions, answered)


def seed_units_for(sessions, domain) -> None:
    from ticketing.seed import seed_units

    with session_scope(sessions) as s:
        seed_units(s, domain.city, domain.clock())


async def _measure(size, concurrency, settings, domain, engine, sessions, answered: bool) -> dict:
    server = None
    if answered:
        from callcenter.pbx.root import RECORDINGS_DIR
        from agi.hotline import Hotline, router_for
        from agi.server import FastAGIServer

        server = FastAGIServer(router_for(Hotline.create(domain, sessions, RECORDINGS_DIR, survey=A)),
                               host=settings.agi_host, port=settings.agi_port)
        await server.start()
    pbx = AmiCallbackPbx.from_settings(settings)
    ami = pbx.ami
    await ami.start()
    latencies: list[float] = []
    runner = CallbackRunner(domain, sessions, pbx, RunnerOptions(channel_prefix=f"bench{uuid.uuid4().hex[:6]}-",
                                                                 settle_seconds=0),
                            on_result=lambda r: latencies.append(r.line_seconds))
    peak = 0

    async def sample():
        nonlocal peak
        while True:
            peak = max(peak, runner.in_flight)
            await asyncio.sleep(0.01)

    ast_pid = running_pids(settings)[0]
    gc.collect()
    rss0 = rss_kb()
    ast0, cpu0, m0, t0 = proc_cpu_seconds(ast_pid), time.process_time(), machine_cpu(), time.perf_counter()
    sampler = asyncio.create_task(sample())
    stats = await runner.drain(timeout=3600)
    wall = time.perf_counter() - t0
    cpu, ast = time.process_time() - cpu0, proc_cpu_seconds(ast_pid) - ast0
    m1 = machine_cpu()
    machine_busy = (m1[0] - m0[0]) / max(m1[1] - m0[1], 1)
    sampler.cancel()
    rss1 = rss_kb()
    await runner.stop()
    await ami.stop()
    if server is not None:
        await server.stop()
    with session_scope(sessions) as s:
        counts = A.counts(s)
        manual = len(A.manual_list(s, limit=size + 1))
        closed = s.execute(select(func.count()).select_from(Case).where(Case.status == CaseStatus.CLOSED)).scalar_one()
        chain_ok = audit.verify(s).ok
    engine.dispose()
    placed = stats.claimed
    mean_rt = sum(latencies) / len(latencies) if latencies else float("nan")
    rate, cap_rate = placed / wall, concurrency / mean_rt
    sched_cores, ast_cores = cpu / wall, ast / wall
    writer_busy = runner.writer_seconds / wall
    if rate >= 0.85 * cap_rate:  # (a short run also pays its last calls' finish grace)
        limit = "the cap (calls up x their length)"
    elif machine_busy >= 0.9:
        limit = (f"the machine's CPU ({machine_busy:.0%} busy: scheduler {sched_cores:.2f} + Asterisk "
                 f"{ast_cores:.2f} of {os.cpu_count()} cores, the rest other processes)")
    elif writer_busy >= 0.8:
        limit = f"the scheduler's store writer (in a transaction {writer_busy:.0%} of the time)"
    else:
        limit = f"the scheduler's event loop (writer busy {writer_busy:.0%}, {sched_cores:.2f} core)"
    return {
        "kind": "answered survey (press 1)" if answered else (
            "busy line, manual list" if domain.policy.callback.max_attempts == 1 else "busy line, retry scheduled"),
        "size": size, "concurrency": concurrency, "placed": placed, "outcomes": stats.outcomes, "states": counts,
        "closed": closed, "audit_chain_ok": chain_ok, "limited_by": limit,
        "manual_list": manual, "wall_s": round(wall, 2), "callbacks_per_s": round(rate, 1 if rate >= 10 else 3),
        "scheduler_cpu_ms_per_callback": round(cpu * 1000 / placed, 2),
        "scheduler_cpu_share_of_one_core": round(cpu / wall, 2),
        "writer_busy_share": round(writer_busy, 2), "machine_cpu_busy_share": round(machine_busy, 2),
        "asterisk_cpu_ms_per_callback": round(ast * 1000 / placed, 2),
        "line_hold_ms": round(mean_rt * 1000, 1),
        "cap_allows_per_s": round(cap_rate, 1 if cap_rate >= 10 else 3),
        "share_of_cap_rate": round(rate / cap_rate, 2),
        # the rate if the machine ran nothing but this scheduler and Asterisk
        "cpu_allows_per_s": round((os.cpu_count() or 1) * placed / (cpu + ast), 1),
        "store_transactions": runner.transactions,
        "results_per_result_transaction": round(placed / max(runner.result_transactions, 1), 1),
        "ami_events_per_callback": round(ami.stats.events_received / placed, 1),
        "peak_in_flight": peak, "rss_mb_after": round(rss1 / 1024, 1), "rss_growth_mb": round((rss1 - rss0) / 1024, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 32])
    ap.add_argument("--max-attempts", type=int, default=1,
                    help="busy runs: 1 = each busy result puts the case on the manual list (audit event); "
                         "more = it schedules a retry (the usual first-attempt path)")
    ap.add_argument("--answered", type=int, default=0, help="also this many answered surveys per concurrency")
    ap.add_argument("--answered-concurrency", type=int, nargs="+", default=[4, 32])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs = [(size, conc, False) for conc in args.concurrency for size in args.sizes]
    if args.answered:
        runs += [(args.answered, conc, True) for conc in args.answered_concurrency]
    with tempfile.TemporaryDirectory(prefix="cb-bench-") as tmp:
        for size, conc, answered in runs:
            res = asyncio.run(run_one(size, conc, Path(tmp), answered=answered,
                                      max_attempts=1 if answered else args.max_attempts))
            print(json.dumps(res, ensure_ascii=False) if args.json else
                  f"{res['kind']}: N={res['size']:>6} cap={res['concurrency']:>3}: {res['callbacks_per_s']}/s "
                  f"(cap allows {res['cap_allows_per_s']}/s = cap / {res['line_hold_ms']} ms line hold; "
                  f"{res['share_of_cap_rate']:.0%} of it; CPU allows {res['cpu_allows_per_s']}/s; peak in flight "
                  f"{res['peak_in_flight']}); limited by "
                  f"{res['limited_by']}; scheduler CPU {res['scheduler_cpu_ms_per_callback']} ms/callback "
                  f"({res['scheduler_cpu_share_of_one_core']} core), Asterisk {res['asterisk_cpu_ms_per_callback']} "
                  f"ms/callback; {res['store_transactions']} store transactions "
                  f"({res['results_per_result_transaction']} results each); RSS {res['rss_mb_after']} MB "
                  f"(+{res['rss_growth_mb']} MB during the run); placed {res['placed']}, manual {res['manual_list']}, "
                  f"closed {res['closed']}, audit chain {'ok' if res['audit_chain_ok'] else 'BROKEN'}",
                  flush=True)


if __name__ == "__main__":
    main()
