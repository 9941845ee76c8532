#!/usr/bin/env python3
"""SIP load with media: citizens calling 12345 over SIP/UDP through the carrier trunk, our menu
(FastAGI + flow engine + case store) against the same menu in pure dialplan, stepped up in one run.

Issue 16 item 1. Goal: the highest load at which >= 99.9 % of menu calls complete, menu response p95
< 300 ms and RTP loss < 0.5 %; ours >= 0.8x the dialplan menu's sustainable concurrent calls.

How a run goes (the project's Asterisk must run with `callcenter asterisk install` done, so the
trunks of asterisk/pjsip.conf + pjsip_bench.conf and asterisk/extensions_bench_sip.conf are loaded):
- callers: SIPp (tests/live/sipp.py), one process per citizen behaviour (every menu branch 0-5 with
  its keys as RFC 4733 events inside a G.711 µ-law RTP stream, hang-ups during the greeting, during
  the menu, and while queued), from 127.0.0.2 (the [trunk] -> [citizen-in] -> our FastAGI menu, real
  prompts) or 127.0.0.3 ([bench-trunk] -> [bench-sip-dialplan], same prompts in pure dialplan). Both
  end in [hotline-queue] (no operators: callers wait until they hang up).
- our FastAGI server runs in a subprocess (benchmarks/ivr_menu_vs_dialplan.py `serve`: a fresh SQLite
  store, or a fresh PostgreSQL schema with --postgres, a clock in service hours) on the install's port.
- steps: for each target of concurrent calls, each variant in turn (order swapped every step) places
  calls for --seconds at the rate that keeps that many calls up (Little's law over the behaviours'
  lengths), then waits for them to end. Per step and variant: calls per second, peak concurrent calls
  and calls in the menu, set-up time (SIPp: INVITE -> 200), first prompt after answer and prompt
  after a key (AMI, Asterisk's timestamps), RTP loss and jitter (Asterisk's receive statistics of
  each call, CHANNEL(rtcp,all) from the trunk's hangup handler), CPU per call (Asterisk, our server,
  SIPp) and the machine's busy share. A variant's steps stop after it fails one.
- afterwards the store is checked: every call of ours has a call record with the outcome its caller
  earned (queued + the branch's reason, or abandoned) and every case branch exactly one case.

Run as root from the project directory (SIPp binds 127.0.0.2/3), with the install's settings:
    .venv/bin/python benchmarks/sip_load.py --steps 40,80,120,160,200 --seconds 45
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from benchmarks.sip_load_events import TrunkCalls, percentile  # noqa: E402
from callcenter.settings import get_settings  # noqa: E402
from tests.live import sipp  # noqa: E402

VARIANTS = {"ours": ("127.0.0.2", "1"), "dialplan": ("127.0.0.3", "2")}  # source address, caller digit
PREFIX_LEN = 6  # caller numbers: 13, variant digit, step (2 digits), behaviour (1 digit), SIPp's call number
CASE_KINDS = ("consultation", "suggestion", "complaint", "urgent_help")
GOAL_COMPLETE = 0.999
GOAL_RESPONSE_MS = 300.0
GOAL_LOSS = 0.005


@dataclass
class Step:
    variant: str
    index: int
    target: int  # concurrent calls aimed at
    rate: float = 0.0  # calls per second placed
    placed: int = 0
    calls: list = field(default_factory=list)  # TrunkCall of this step
    expected: dict[str, str] = field(default_factory=dict)  # caller prefix -> behaviour name
    counts: dict[str, int] = field(default_factory=dict)  # behaviour name -> calls placed
    sipp_failed: Counter = field(default_factory=Counter)
    sipp_ok: Counter = field(default_factory=Counter)
    setup_ms: list[float] = field(default_factory=list)
    peak_calls: int = 0
    peak_menu: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # asterisk / server / sipp / machine_busy
    completed: int = 0
    menu_calls: int = 0
    wrong: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # a few calls that did not complete

    # -- figures ---------------------------------------------------------------------------
    def first_prompt(self) -> list[float]:
        return [v for c in self.calls if (v := c.first_prompt_ms()) is not None]

    def key_response(self) -> list[float]:
        return [v for c in self.calls for v in c.key_response_ms()]

    def rtp(self) -> tuple[float, float, int]:
        """(loss share, p95 receive jitter ms, calls with statistics)."""
        stats = [s for c in self.calls if (s := c.rtp()) is not None]
        received, lost = sum(s[0] for s in stats), sum(s[1] for s in stats)
        loss = lost / (received + lost) if received + lost else float("nan")
        return loss, percentile([s[2] for s in stats], 95), len(stats)

    def passed(self) -> bool:
        loss, _, _ = self.rtp()
        return (self.menu_calls > 0 and self.completed / self.menu_calls >= GOAL_COMPLETE
                and percentile(self.key_response(), 95) < GOAL_RESPONSE_MS
                and percentile(self.first_prompt(), 95) < GOAL_RESPONSE_MS
                and not loss >= GOAL_LOSS)


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    parts = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def plan(target: int, seconds: float) -> tuple[float, dict[str, int]]:
    """Total call rate keeping `target` calls up, and calls per behaviour over `seconds`."""
    weights = sum(b.weight for b in sipp.BEHAVIOURS)
    mean_len = sum(b.weight * (b.hangup_s + 0.2) for b in sipp.BEHAVIOURS) / weights
    rate = target / mean_len
    return rate, {b.name: max(1, round(rate * seconds * b.weight / weights)) for b in sipp.BEHAVIOURS}


_SIPP_ROW = re.compile(r"^\s*(Successful call|Failed call)\s*\|\s*\d+\s*\|\s*(\d+)", re.M)


async def run_step(step: Step, args, settings, scenarios: dict[str, Path], workdir: Path, ami: TrunkCalls,
                   pids: dict[str, int]) -> None:
    ip, digit = VARIANTS[step.variant]
    step.rate, counts = plan(step.target, args.seconds)
    step.counts = counts
    target = f"{settings.sip_host}:{settings.sip_port}"
    trace = workdir / f"{step.variant}-s{step.index}"
    trace.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, b in enumerate(sipp.BEHAVIOURS):
        prefix = f"13{digit}{step.index:02d}{i}"  # + SIPp's call number: unique in the run
        step.expected[prefix] = b.name
        every_ms = max(1, round(args.seconds * 1000 / counts[b.name]))
        argv = sipp.sipp_argv(scenarios[b.name], target=target, local_ip=ip, local_port=25100 + i,
                              media_port=30000 + 1100 * i, caller_prefix=prefix, calls=counts[b.name],
                              every_ms=every_ms, trace_dir=trace)
        procs.append((b, await asyncio.create_subprocess_exec(*argv, cwd=trace, stdout=asyncio.subprocess.PIPE,
                                                               stderr=asyncio.subprocess.STDOUT)))
        step.placed += counts[b.name]
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, total0 = machine_busy()
    t0 = time.time()
    waiting = asyncio.gather(*(p.communicate() for _, p in procs))
    try:
        while not waiting.done():
            live, menu = ami.live(step.variant)
            step.peak_calls, step.peak_menu = max(step.peak_calls, live), max(step.peak_menu, menu)
            await asyncio.sleep(0.5)
        outputs = await waiting
    finally:
        for _, p in procs:  # interrupted: no SIPp left calling
            if p.returncode is None:
                p.kill()
    step.seconds = time.time() - t0
    await asyncio.sleep(2.0)  # the last hangup handlers' events
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy1, total1 = machine_busy()
    step.cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    step.cpu["sipp"] = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    step.cpu["machine_busy"] = (busy1 - busy0) / (total1 - total0) if total1 > total0 else float("nan")
    for (b, _), (out, _) in zip(procs, outputs):
        rows = dict(_SIPP_ROW.findall(out.decode(errors="replace")))
        step.sipp_ok[b.name] = int(rows.get("Successful call", 0))
        step.sipp_failed[b.name] = int(rows.get("Failed call", 0)) if rows else counts[b.name]
    for rtt in trace.glob("*_rtt.csv"):
        for line in rtt.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    step.setup_ms.append(float(parts[1]))
                except ValueError:
                    pass
    judge(step, ami)
    dump(step, trace / "calls.json")


def dump(step: Step, path: Path) -> None:
    """Every call of the step as Asterisk saw it, times relative to the answer (for diagnosis)."""
    import json

    by_prefix = {p: n for p, n in step.expected.items()}
    rows = []
    for c in step.calls:
        t0 = c.answered or c.created
        rows.append({"caller": c.caller, "behaviour": by_prefix.get(c.caller[:PREFIX_LEN]), "uniqueid": c.uniqueid,
                     "answered": round((c.answered or c.created) - c.created, 3),
                     "prompts": [round(p - t0, 3) for p in c.prompts],
                     "keys": [(round(at - t0, 3), d) for at, d in c.keys],
                     "queued": round(c.queued - t0, 3) if c.queued else None, "reason": c.reason,
                     "ended": round(c.ended - t0, 3) if c.ended else None, "qos": c.qos})
    path.write_text(json.dumps(rows, indent=0))


def judge(step: Step, ami: TrunkCalls) -> None:
    """A menu call completes when its caller reached the queue with the reason of the branch they
    pressed and SIPp's call did not fail; a hang-up in the menu must not reach the queue. Calls that
    Asterisk never saw count as not complete."""
    by_prefix = {p: sipp.BY_NAME[n] for p, n in step.expected.items()}
    step.calls = [c for c in ami.calls.values() if c.variant == step.variant and c.caller[:PREFIX_LEN] in by_prefix]
    seen: Counter = Counter()
    for call in step.calls:
        b = by_prefix[call.caller[:PREFIX_LEN]]
        seen[b.name] += 1
        if not b.menu_call:
            if call.queued is not None:
                step.wrong[f"{b.name}: reached the queue"] += 1
            continue
        step.menu_calls += 1
        if call.reason == b.reason:
            step.completed += 1
        else:
            step.wrong[f"{b.name}: {call.reason or 'not queued'}"] += 1
            if len(step.examples) < 3:
                t0 = call.answered or call.created
                step.examples.append(f"{b.name} {call.caller}: keys {[(round(a - t0, 1), d) for a, d in call.keys][:3]} "
                                     f"prompts {[round(p - t0, 1) for p in call.prompts][-4:]} ended "
                                     f"{round((call.ended or t0) - t0, 1)}")
    for b in sipp.BEHAVIOURS:
        missing = step.counts[b.name] - seen[b.name]
        if missing > 0:
            step.wrong[f"{b.name}: never reached Asterisk"] += missing
            step.menu_calls += missing if b.menu_call else 0
    menu_failed = sum(n for name, n in step.sipp_failed.items() if sipp.BY_NAME[name].menu_call)
    step.completed = max(0, step.completed - menu_failed)


def describe(step: Step) -> str:
    loss, jitter, with_stats = step.rtp()
    fp, kr = step.first_prompt(), step.key_response()
    n = len(step.calls) or 1
    return (f"step {step.index} {step.variant:<8} target {step.target:4d}: {step.rate:5.2f} calls/s, {step.placed} placed, "
            f"peak {step.peak_calls} up / {step.peak_menu} in menu; menu calls complete {step.completed}/"
            f"{step.menu_calls}; set-up p50/p95 {percentile(step.setup_ms, 50):.0f}/{percentile(step.setup_ms, 95):.0f} ms; "
            f"first prompt p50/p95 {percentile(fp, 50):.0f}/{percentile(fp, 95):.0f} ms; after key p50/p95 "
            f"{percentile(kr, 50):.0f}/{percentile(kr, 95):.0f} ms; RTP loss {loss * 100:.3f} % jitter p95 "
            f"{jitter:.1f} ms ({with_stats} calls); CPU ms/call Asterisk {step.cpu['asterisk'] / n * 1000:.0f} server "
            f"{step.cpu.get('server', 0) / n * 1000:.0f} SIPp {step.cpu['sipp'] / n * 1000:.0f}; machine busy "
            f"{step.cpu['machine_busy'] * 100:.0f} %; {'PASS' if step.passed() else 'FAIL'}"
            + (f"; not complete: {dict(step.wrong)}" if step.wrong else "")
            + (f"; SIPp failed: {dict(+step.sipp_failed)}" if sum(step.sipp_failed.values()) else "")
            + "".join(f"\n    e.g. {e}" for e in step.examples))


def check_store(db_url: str, steps: list[Step]) -> list[str]:
    """Every call of ours has a call record saying what happened to it in Asterisk (queued with the
    reason [hotline-queue] reported, or abandoned when the caller hung up in the menu -- also a menu
    call that did not complete in time), and at most one case, exactly the one its record names."""
    from sqlalchemy import select

    from ticketing.models import Call, Case
    from ticketing.store import make_engine, make_session_factory, session_scope

    engine = make_engine(db_url)
    problems: Counter = Counter()
    checked = 0
    with session_scope(make_session_factory(engine)) as s:
        records = {c.uniqueid: c for c in s.execute(select(Call)).scalars()}
        cases: dict[int, list[int]] = {}
        for case in s.execute(select(Case)).scalars():
            cases.setdefault(case.created_by_call_id, []).append(case.id)
        for step in steps:
            if step.variant != "ours":
                continue
            by_prefix = {p: sipp.BY_NAME[n] for p, n in step.expected.items()}
            for call in step.calls:
                b, rec = by_prefix[call.caller[:PREFIX_LEN]], records.get(call.uniqueid)
                checked += 1
                if rec is None:
                    problems["no call record"] += 1
                    continue
                want = ("queued", call.reason) if call.reason else ("abandoned", "hangup")
                if (rec.outcome, rec.outcome_reason) != want:
                    problems[f"{b.name}: record {rec.outcome}/{rec.outcome_reason}, Asterisk saw {want}"] += 1
                made = cases.get(rec.id, [])
                if made != ([rec.case_id] if rec.case_id is not None else []):
                    problems[f"{b.name}: cases {made} for a record naming {rec.case_id}"] += 1
                if call.reason in CASE_KINDS and rec.case_id is None:
                    problems[f"{b.name}: queued as {call.reason} without a case"] += 1
    engine.dispose()
    lines = [f"store: {checked} calls of ours checked, {len(records)} call records"]
    lines += [f"  PROBLEM: {what} x{n}" for what, n in sorted(problems.items())]
    if not problems:
        lines.append("  every call of ours has its call record with the outcome Asterisk saw (queued + reason, or "
                     "abandoned), and exactly the case its record names (one for every case branch queued)")
    return lines


def summarize(steps: list[Step], args, started: str) -> list[str]:
    out = [f"Run {started}: steps (target concurrent calls) {args.steps}, calls placed for {args.seconds:g} s per "
           f"step and variant, store {'PostgreSQL (fresh schema)' if args.postgres else 'SQLite (fresh file)'}; "
           f"{os.cpu_count()} cores",
           "",
           "| step | variant | target | calls/s | peak calls up / in menu | menu calls complete | set-up p95 ms "
           "| first prompt p50/p95 ms | after key p50/p95 ms | RTP loss % | jitter p95 ms | CPU ms/call Asterisk / server / SIPp "
           "| machine busy | result |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for st in steps:
        loss, jitter, _ = st.rtp()
        fp, kr = st.first_prompt(), st.key_response()
        n = len(st.calls) or 1
        out.append(
            f"| {st.index} | {st.variant} | {st.target} | {st.rate:.2f} | {st.peak_calls} / {st.peak_menu} | "
            f"{st.completed}/{st.menu_calls} ({st.completed / (st.menu_calls or 1) * 100:.2f} %) | "
            f"{percentile(st.setup_ms, 95):.0f} | {percentile(fp, 50):.0f}/{percentile(fp, 95):.0f} | "
            f"{percentile(kr, 50):.0f}/{percentile(kr, 95):.0f} | {loss * 100:.3f} | {jitter:.1f} | "
            f"{st.cpu['asterisk'] / n * 1000:.0f} / {st.cpu.get('server', 0) / n * 1000:.0f} / "
            f"{st.cpu['sipp'] / n * 1000:.0f} | {st.cpu['machine_busy'] * 100:.0f} % | "
            f"{'pass' if st.passed() else 'FAIL'} |")
    best = {}
    for variant in VARIANTS:
        passing = [st for st in steps if st.variant == variant and st.passed()]
        best[variant] = max(passing, key=lambda st: st.target) if passing else None
    out.append("")
    for variant, st in best.items():
        if st is None:
            out.append(f"{variant}: no step passed")
        else:
            out.append(f"{variant}: highest passing step {st.index} (target {st.target}), peak {st.peak_calls} concurrent "
                       f"calls ({st.peak_menu} in the menu) at {st.rate:.2f} calls/s")
    if best.get("ours") and best.get("dialplan"):
        top = max(s.target for s in steps)
        capped = all(st.target == top for st in best.values())
        ratio = best["ours"].peak_calls / best["dialplan"].peak_calls
        out.append(f"ratio ours/dialplan of sustainable concurrent calls: {ratio:.2f} (goal >= 0.80)"
                   + (" -- both passed the highest step tried: a lower bound of neither's ceiling" if capped else ""))
    return out


async def drive(args, settings, server_pid: int, scenarios: dict[str, Path], workdir: Path) -> list[Step]:
    from callcenter.pbx.credentials import ami_secret
    from callcenter.pbx.process import running_pids

    pids = running_pids(settings)
    if not pids:
        raise SystemExit("Asterisk is not running: `.venv/bin/callcenter asterisk start`")
    ami = TrunkCalls()
    await ami.connect(settings.ami_host, settings.ami_port, settings.ami_username, ami_secret(settings))
    steps: list[Step] = []
    active = [v for v in VARIANTS if v in args.variants]
    try:
        for index, target in enumerate(args.steps, start=1):
            order = active if index % 2 else list(reversed(active))
            for variant in order:
                step = Step(variant, index, target)
                await run_step(step, args, settings, scenarios, workdir, ami,
                               {"asterisk": pids[0], **({"server": server_pid} if variant == "ours" else {})})
                steps.append(step)
                print(describe(step), flush=True)
                await asyncio.sleep(args.pause)
            # a variant stops after failing `--give-up` steps in a row (one failure on a shared machine
            # can be noise; the figure stays the highest passing step either way)
            def going(variant: str) -> bool:
                recent = [st for st in steps if st.variant == variant][-args.give_up:]
                return len(recent) < args.give_up or any(st.passed() for st in recent)

            active = [v for v in active if going(v)]
            if not active:
                break
    finally:
        await ami.close()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="40,80,120,160,200",
                        type=lambda s: [int(x) for x in s.split(",")], help="target concurrent calls per step")
    parser.add_argument("--seconds", type=float, default=45.0, help="seconds of call arrivals per step and variant")
    parser.add_argument("--variants", default="ours,dialplan", type=lambda s: s.split(","))
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between steps")
    parser.add_argument("--give-up", type=int, default=2, help="stop a variant after this many failed steps in a row")
    parser.add_argument("--postgres", default="", metavar="URL",
                        help="our store on PostgreSQL: a fresh schema in this database, dropped afterwards")
    args = parser.parse_args()
    # SIGTERM too ends the run the clean way (FastAGI server stopped, SIPp killed)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    from benchmarks.ivr_menu_vs_dialplan import server_process, wait_port_free
    from callcenter.pbx.process import cli
    from tests.live.helpers import agi_port_lock

    settings = get_settings()
    for what, needle in (("dialplan show bench-sip-dialplan", "Context 'bench-sip-dialplan'"),
                         ("pjsip show endpoint bench-trunk", "bench-trunk"), ("pjsip show endpoint trunk", "trunk")):
        if needle not in cli(settings, what):
            raise SystemExit(f"`{what}`: not loaded; run `.venv/bin/callcenter asterisk install`")
    workdir = Path(tempfile.mkdtemp(prefix="sip-load-", dir=Path(settings.state_dir)))
    scenarios = sipp.prepare(workdir / "scenarios")
    db_url, pg_schema = f"sqlite:///{workdir / 'bench.db'}", None
    if args.postgres:
        from sqlalchemy import text

        from ticketing.store import make_engine

        pg_schema = f"bench_sip_{uuid.uuid4().hex[:10]}"
        admin = make_engine(args.postgres)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{pg_schema}"'))
        admin.dispose()
        db_url = f"{args.postgres}{'&' if '?' in args.postgres else '?'}options=-csearch_path%3D{pg_schema}"
    started = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load_before = os.getloadavg()
    try:
        with agi_port_lock(settings):
            wait_port_free(settings.agi_host, settings.agi_port)
            with server_process(db_url, settings.agi_port, workdir / "server.log", None) as proc:
                steps = asyncio.run(drive(args, settings, proc.pid, scenarios, workdir))
        store_lines = check_store(db_url, steps)
    finally:
        if pg_schema:
            from sqlalchemy import text

            from ticketing.store import make_engine

            admin = make_engine(args.postgres)
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{pg_schema}" CASCADE'))
            admin.dispose()
    print()
    print("\n".join(summarize(steps, args, started) + store_lines))
    print(f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}; SIPp traces, server log "
          f"and store in {workdir}")


if __name__ == "__main__":
    main()
