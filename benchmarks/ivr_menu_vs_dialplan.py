#!/usr/bin/env python3
"""Voice menu end to end: our menu (FastAGI + flow engine + case store) vs the same menu in pure dialplan.

Issue 3 (b): the default menu of ivr_flows/main.yaml, caller presses 1, a consultation case is created
and the call logged, against the same menu written in pure dialplan with the same prompts -- the
ceiling. Goal: at least 0.8x the pure-dialplan call rate, measured in one run.

How a run goes (project's Asterisk must already run, with `callcenter asterisk install` done so
`asterisk/extensions_bench_menu.conf` is loaded):
- silent prompts: `sounds/zh/bench-silent/<name>.wav` for every prompt of ivr_flows/prompts.yaml and
  `sounds/zh_bench/digits/0-9.wav` (the case number's digits), all copies of the 20 ms
  `hotline/short-silence`, created in the Asterisk root (nothing of the real prompts is touched;
  they stay for the next run). Both variants set the channel language to `zh_bench`.
- our FastAGI server runs in a SUBPROCESS (its own CPU, measured alone; the AMI driver does not
  share its event loop) on the install's port 4573 (the port lock `tests.live.helpers.agi_port_lock`
  is held for the whole run), over a fresh SQLite store seeded from config/ (`--postgres URL`: a
  fresh schema in that PostgreSQL database instead), with a clock in service hours, logging at INFO
  like `callcenter agi serve`.
- callers: AMI Originate of `Local/s@bench-menu-<variant>` whose ;1 half runs [bench-menu-caller]
  (one 20 ms frame, then listens), ~`--inflight` calls at once, each caller number unique. The key 1
  is pressed PRESS_DELAY_S after the menu's CallcenterAwaitInput UserEvent (AMI PlayDTMF, Receive,
  on the menu's channel), again every PRESS_RETRY_S until the menu is done (a key that falls between
  two AGI commands is dropped by res_agi). A call is complete when its `BenchMenuDone` UserEvent
  arrives (Reason consultation = the 1 was taken; operator = the menu timed out: a lost digit).
- rounds alternate the two variants (their order swaps every round) after one warm-up pair; rate
  of a round = calls that pressed 1 / time from the first Originate to the last of them. CPU per
  call: Asterisk's (the whole process: other users of the same Asterisk count too) and the server's.
- afterwards the store is checked: every `ours` call that pressed 1 has exactly one call record
  (its uniqueid, outcome queued / reason consultation) and exactly one consultation case created
  by that record for that caller; calls whose digit was lost have a record and no case.

Run as root from the project directory:
    .venv/bin/python benchmarks/ivr_menu_vs_dialplan.py --calls 1200 --rounds 3 --inflight 300
`--profile FILE` (cProfile, server's main thread) or `--py-spy FILE` (all threads, needs py-spy)
profile the server; `--db-threads thread` runs every transaction in a worker thread (the code before
the event-loop transactions on SQLite), `inline`/`one` are experiments; `--loop` picks the server's
event loop (default: the install's CALLCENTER_EVENT_LOOP, uvloop).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from callcenter.settings import get_settings  # noqa: E402

VARIANTS = ("ours", "dialplan")
SOUNDS = "/usr/share/asterisk/sounds"
BENCH_PROMPTS = "bench-silent"  # sounds/zh/bench-silent/<prompt>.wav
BENCH_LANGUAGE = "zh_bench"  # sounds/zh_bench/digits/N.wav; everything else falls back to zh
IN_HOURS = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 Shanghai: the menu is open
CALL_TIMEOUT_S = 40.0  # originate -> BenchMenuDone; a lost digit costs 5 s of menu timeout
# The caller presses 1 PRESS_DELAY_S after the menu announces it listens (CallcenterAwaitInput), i.e.
# during the menu's read, as callcenter/simulate.py does; a key that arrives between two AGI commands
# is dropped by res_agi, so it presses again every PRESS_RETRY_S until the menu is done.
PRESS_DELAY_S = 0.2
PRESS_RETRY_S = 1.5
PRESS_MAX = 5  # then the menu's own 5 s timeout decides (a lost digit)
DTMF_MS = 100


# ---------------------------------------------------------------------------------------------
# the FastAGI server (subprocess)


def _run_transactions_inline() -> None:
    """The `--db-threads inline` experiment: CallContext.tx runs its transaction on the event loop
    instead of hopping to a worker thread (not safe for production: a database lock held elsewhere
    would stall every call's AGI traffic)."""
    from agi.hotline import CallContext

    async def tx(self, fn):
        return self.run_tx(fn)

    CallContext.tx = tx


def serve(db_url: str, port: int, profile_to: str | None, db_threads: str = "default", loop: str = "uvloop") -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 8192):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))

    from callcenter.pbx.root import RECORDINGS_DIR
    from agi.hotline import Hotline, router_for
    from callcenter import eventloop
    from agi.server import FastAGIServer
    from ticketing.domain import Domain
    from ticketing.seed import seed_units
    from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

    settings = get_settings()
    # A1: the audit chain of this throwaway store is sealed with a throwaway key, as the composition
    # root does with the install's (callcenter.audit_vault)
    from callcenter.audit_vault import install as install_audit_vault

    install_audit_vault(tempfile.mkdtemp(prefix="menu-bench-audit-"))
    upgrade(db_url)
    t0 = time.monotonic()

    def clock() -> datetime:  # in service hours, moving on in real time
        return IN_HOURS + timedelta(seconds=time.monotonic() - t0)

    base = Domain.load(settings.config_dir)
    domain = Domain(policy=base.policy, calendar=base.calendar, city=base.city, clock=clock)
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        seed_units(s, domain.city, clock())
    # default: as shipped (agi.hotline: on SQLite a transaction runs on the event loop when the write
    # lock is free, else in a worker thread); thread: always a worker thread (the code before that)
    hotline = Hotline.create(domain, sessions, RECORDINGS_DIR, inline_sqlite=db_threads != "thread")
    if db_threads == "inline":  # experiment only: database work on the event loop itself, no thread hop
        _run_transactions_inline()
    one_thread = db_threads == "one"  # experiment: one worker thread for all transactions

    async def main() -> None:
        if one_thread:
            from concurrent.futures import ThreadPoolExecutor

            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1, "db"))
        server = FastAGIServer(router_for(hotline), host=settings.agi_host, port=port, backlog=2048)
        await server.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(server.stop(timeout=5)))
        print("READY", flush=True)
        await server.serve_forever()
        print("STATS", server.stats.snapshot(), flush=True)

    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            eventloop.run(main(), loop)
        finally:
            profiler.disable()
            profiler.dump_stats(profile_to)
    else:
        eventloop.run(main(), loop)
    engine.dispose()


@contextlib.contextmanager
def server_process(db_url: str, port: int, log_path: Path, profile_to: str | None, db_threads: str = "default",
                   loop: str = "uvloop"):
    argv = [sys.executable, __file__, "serve", "--db", db_url, "--port", str(port), "--db-threads", db_threads,
            "--loop", loop]
    if profile_to:
        argv += ["--profile", profile_to]
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log_file, text=True, cwd=PROJECT)
        try:
            line = proc.stdout.readline()
            if "READY" not in line:
                raise RuntimeError(f"FastAGI server did not start ({line!r}); see {log_path}")
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            proc.tail = out  # type: ignore[attr-defined]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port_free(host: str, port: int, limit_s: float = 180.0) -> None:
    """A server of another session that skipped the lock: wait for it rather than fail at once."""
    import socket

    deadline = time.monotonic() + limit_s
    while True:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{host}:{port} stays in use; stop the FastAGI server there first")
        time.sleep(1.0)


# ---------------------------------------------------------------------------------------------
# minimal AMI client (raw asyncio socket): login, event filter, Originate, UserEvents


class MiniAMI:
    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.responses: dict[str, asyncio.Future] = {}
        self.waiters: dict[str, asyncio.Future] = {}  # BENCH_ID -> future of its final UserEvent
        self.presses: Counter = Counter()  # BENCH_ID -> keys pressed (PlayDTMF sent)
        self._pressers: set[asyncio.Task] = set()
        self.originate_failures = 0
        self._ids = 0
        self._task: asyncio.Task | None = None

    async def connect(self, host: str, port: int, username: str, secret: str) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port, limit=1 << 20)
        banner = await asyncio.wait_for(self.reader.readline(), 10)
        if not banner.startswith(b"Asterisk Call Manager"):
            raise RuntimeError(f"not AMI: {banner!r}")
        self._task = asyncio.create_task(self._read_loop())
        reply = await self.action("Login", Username=username, Secret=secret, Events="call,user")
        if reply.get("Response") != "Success":
            raise RuntimeError(f"AMI login failed: {reply.get('Message')}")
        for pattern in ("Event: UserEvent", "Event: OriginateResponse"):  # nothing else crosses the socket
            reply = await self.action("Filter", Operation="Add", Filter=pattern)
            if reply.get("Response") != "Success":
                raise RuntimeError(f"AMI Filter failed: {reply}")

    def send(self, action: str, **fields: str) -> str:
        self._ids += 1
        action_id = fields.pop("ActionID", None) or f"menu-bench-{os.getpid()}-{self._ids}"
        lines = [f"Action: {action}", f"ActionID: {action_id}"] + [f"{k}: {v}" for k, v in fields.items()]
        assert self.writer is not None
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    async def action(self, action: str, timeout: float = 10.0, **fields: str) -> dict[str, str]:
        self._ids += 1
        action_id = f"menu-bench-{os.getpid()}-{self._ids}"
        fut = asyncio.get_running_loop().create_future()
        self.responses[action_id] = fut
        self.send(action, ActionID=action_id, **fields)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.responses.pop(action_id, None)

    def expect_done(self, bench_id: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.waiters[bench_id] = fut
        return fut

    async def _read_loop(self) -> None:
        assert self.reader is not None
        while True:
            try:
                raw = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                for fut in self.waiters.values():
                    if not fut.done():
                        fut.set_exception(ConnectionError("AMI connection lost"))
                return
            msg: dict[str, str] = {}
            for line in raw.decode("utf-8", "replace").split("\r\n"):
                key, sep, value = line.partition(": ")
                if sep:
                    msg.setdefault(key, value)
            if "Response" in msg and "Event" not in msg:
                fut = self.responses.get(msg.get("ActionID", ""))
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                continue
            event = msg.get("Event")
            if event == "OriginateResponse" and msg.get("Response") != "Success":
                # ActionID = BENCH_ID (other sessions' Originates show up too: not ours, not counted)
                fut = self.waiters.pop(msg.get("ActionID", ""), None)
                if fut is not None and not fut.done():
                    self.originate_failures += 1
                    fut.set_result((time.perf_counter(), msg))
            elif event == "UserEvent" and msg.get("UserEvent") == "CallcenterAwaitInput":
                # the menu listens: the caller presses 1 (only our calls; other sessions' too arrive)
                bench_id = msg.get("Uniqueid", "").removesuffix("-2")
                channel = msg.get("Channel", "")
                if bench_id in self.waiters and channel.endswith(";2"):
                    task = asyncio.create_task(self._press(bench_id, channel))
                    self._pressers.add(task)
                    task.add_done_callback(self._pressers.discard)
            elif event == "UserEvent" and msg.get("UserEvent") in ("BenchMenuDone", "BenchMenuBroken"):
                fut = self.waiters.pop(msg.get("Id", ""), None)
                if fut is not None and not fut.done():
                    fut.set_result((time.perf_counter(), msg))

    async def _press(self, bench_id: str, menu_channel: str) -> None:
        """The caller presses 1; again every PRESS_RETRY_S until the menu is done with the call."""
        fut = self.waiters.get(bench_id)
        await asyncio.sleep(PRESS_DELAY_S)
        for _ in range(PRESS_MAX):
            if fut is None or fut.done():
                return
            self.presses[bench_id] += 1
            # Receive: queued on the menu's channel as a key from the caller. Sending it out of the
            # caller's leg instead holds this AMI session for the key's duration: 10 keys/s at most.
            self.send("PlayDTMF", Channel=menu_channel, Digit="1", Duration=str(DTMF_MS), Receive="true")
            await asyncio.sleep(PRESS_RETRY_S)

    async def close(self) -> None:
        for task in list(self._pressers):
            task.cancel()
        if self.writer is not None:
            with contextlib.suppress(Exception):
                await self.action("Logoff", timeout=2)
            self.writer.close()
        if self._task is not None:
            self._task.cancel()


# ---------------------------------------------------------------------------------------------
# setup: silent prompts, dialplan present


def make_silent_prompts(settings) -> int:
    """Copies of the 20 ms silence for every prompt and for the digits 0-9; returns the files made."""
    from callcenter.pbx.root import host_path
    from ivr_flows import PROMPTS_PATH
    from ivr_flows.engine import load_prompts

    silence = host_path(settings, f"{SOUNDS}/zh/hotline/short-silence.wav")
    if not silence.is_file():
        raise SystemExit(f"{silence} missing: run `callcenter asterisk install` first")
    targets = [host_path(settings, f"{SOUNDS}/zh/{BENCH_PROMPTS}/{name}.wav")
               for name in [*load_prompts(PROMPTS_PATH), "short-silence"]]
    targets += [host_path(settings, f"{SOUNDS}/{BENCH_LANGUAGE}/digits/{d}.wav") for d in "0123456789"]
    made = 0
    data = silence.read_bytes()
    for target in targets:
        if target.is_file() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(target.parent, 0o755)
        shutil.copyfile(silence, target)
        os.chmod(target, 0o644)
        made += 1
    return made


def check_dialplan(settings) -> None:
    from callcenter.pbx.process import cli

    for context in ("bench-menu-caller", "bench-menu-ours", "bench-menu-dialplan"):
        out = cli(settings, f"dialplan show {context}")
        if f"Context '{context}'" not in out:
            raise SystemExit(f"dialplan context {context} not loaded: run `.venv/bin/callcenter asterisk install`")


# ---------------------------------------------------------------------------------------------
# rounds


@dataclass
class Round:
    variant: str
    index: int  # 0 = warm-up
    calls: int
    inflight: int
    ok: int = 0  # BenchMenuDone with the "1" (case path)
    lost_digit: int = 0  # BenchMenuDone via the menu timeout (digit lost in Asterisk)
    broken: int = 0  # BenchMenuBroken: the call ended before the menu did
    missing: int = 0  # no event within CALL_TIMEOUT_S
    originate_failed: int = 0  # Asterisk could not start the call (OriginateResponse Failure)
    other: Counter = field(default_factory=Counter)
    seconds_ok: float = 0.0  # first Originate -> last ok completion
    seconds_all: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # originate -> done, ok calls
    asterisk_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    ids: dict[str, str] = field(default_factory=dict)  # BENCH_ID -> outcome (ok/lost_digit/...)
    callers: dict[str, str] = field(default_factory=dict)  # BENCH_ID -> caller number
    # keys pressed per call; above 1 also when the menu took the first key but had not finished
    # within PRESS_RETRY_S (so an upper bound of the keys lost)
    presses: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds_ok if self.seconds_ok else 0.0


class Numbers:
    """Unique caller numbers for the whole run: nobody has open cases, every call takes the same path."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"139{self.n:08d}"


async def run_round(ami: MiniAMI, variant: str, index: int, calls: int, inflight: int, numbers: Numbers,
                    asterisk_pid: int, server_pid: int | None, run_tag: str) -> Round:
    rnd = Round(variant, index, calls, inflight)
    gate = asyncio.Semaphore(inflight)
    done_at: list[float] = []
    ok_at: list[float] = []

    async def one(i: int) -> None:
        # Fixed width, and ;1/;2 suffixes of equal length: Asterisk 22 refuses a ChannelId that is a
        # prefix of a live channel's uniqueid ("...-1" vs "...-10-2"), so no id may prefix another.
        bench_id = f"{run_tag}-{variant}-r{index}-{i:06d}"
        caller = numbers.next()
        rnd.callers[bench_id] = caller
        async with gate:
            fut = ami.expect_done(bench_id)
            sent = time.perf_counter()
            ami.send("Originate", Channel=f"Local/s@bench-menu-{variant}", Context="bench-menu-caller",
                     Exten="s", Priority="1", Async="true", Timeout="30000",
                     CallerID=f'"bench" <{caller}>', ChannelId=f"{bench_id}-1", OtherChannelId=f"{bench_id}-2",
                     Variable=f"__BENCH_ID={bench_id}", ActionID=bench_id)
            try:
                at, msg = await asyncio.wait_for(fut, CALL_TIMEOUT_S)
            except (TimeoutError, ConnectionError):
                ami.waiters.pop(bench_id, None)
                rnd.missing += 1
                rnd.ids[bench_id] = "missing"
                return
            if msg.get("Event") == "OriginateResponse":  # the call never started
                rnd.originate_failed += 1
                rnd.ids[bench_id] = "originate_failed"
                return
        done_at.append(at)
        if msg.get("UserEvent") == "BenchMenuBroken":
            rnd.broken += 1
            rnd.ids[bench_id] = "broken"
            return
        reason = msg.get("Reason", "")
        if reason == "consultation":
            rnd.ok += 1
            ok_at.append(at)
            rnd.latencies_ms.append((at - sent) * 1000)
            rnd.ids[bench_id] = "ok"
        elif reason == "operator":
            rnd.lost_digit += 1
            rnd.ids[bench_id] = "lost_digit"
        else:
            rnd.other[reason or "?"] += 1
            rnd.ids[bench_id] = f"other:{reason}"

    ast0 = cpu_seconds(asterisk_pid)
    srv0 = cpu_seconds(server_pid) if server_pid else 0.0
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    rnd.asterisk_cpu_s = cpu_seconds(asterisk_pid) - ast0
    rnd.server_cpu_s = (cpu_seconds(server_pid) - srv0) if server_pid else 0.0
    rnd.seconds_ok = (max(ok_at) - t0) if ok_at else 0.0
    rnd.seconds_all = (max(done_at) - t0) if done_at else 0.0
    return rnd


def describe(rnd: Round) -> str:
    lat = statistics.median(rnd.latencies_ms) if rnd.latencies_ms else float("nan")
    extra = f", other {dict(rnd.other)}" if rnd.other else ""
    return (f"{'warm-up' if rnd.index == 0 else f'round {rnd.index}'} {rnd.variant:<8} {rnd.rate:6.1f} calls/s "
            f"({rnd.ok}/{rnd.calls} pressed 1 in {rnd.seconds_ok:.2f} s; lost digit {rnd.lost_digit}, broken "
            f"{rnd.broken}, missing {rnd.missing}, originate failed {rnd.originate_failed}{extra}); originate->done median "
            f"{lat:.0f} ms; keys per call {statistics.mean(rnd.presses or [0]):.2f} (max {max(rnd.presses or [0])}); Asterisk CPU "
            f"{rnd.asterisk_cpu_s / rnd.calls * 1000:.2f} ms/call, server {rnd.server_cpu_s / rnd.calls * 1000:.2f} ms/call")


# ---------------------------------------------------------------------------------------------
# the store check


def check_store(db_url: str, rounds: list[Round]) -> tuple[bool, list[str]]:
    """Every ours call that pressed 1: one call record queued/consultation, one case made by it."""
    from sqlalchemy import func, select

    from ticketing.models import Call, Case
    from ticketing.store import make_engine, make_session_factory, session_scope

    engine = make_engine(db_url)
    lines: list[str] = []
    problems = Counter()
    expected_ok = expected_lost = 0
    with session_scope(make_session_factory(engine)) as s:
        calls = {c.uniqueid: c for c in s.execute(select(Call)).scalars()}
        cases_by_call: dict[int, list[Case]] = {}
        for case in s.execute(select(Case)).scalars():
            cases_by_call.setdefault(case.created_by_call_id, []).append(case)
        total_cases = s.execute(select(func.count()).select_from(Case)).scalar_one()
        for rnd in rounds:
            if rnd.variant != "ours":
                continue
            for bench_id, outcome in rnd.ids.items():
                call = calls.get(f"{bench_id}-2")
                if outcome == "ok":
                    expected_ok += 1
                    if call is None:
                        problems["pressed 1 but no call record"] += 1
                        continue
                    if (call.outcome, call.outcome_reason) != ("queued", "consultation"):
                        problems[f"call record {call.outcome}/{call.outcome_reason}"] += 1
                    made = cases_by_call.get(call.id, [])
                    if len(made) != 1:
                        problems[f"{len(made)} cases for one call"] += 1
                        continue
                    case = made[0]
                    if (case.id != call.case_id or case.kind.value != "consultation"
                            or case.citizen_phone != rnd.callers[bench_id]):
                        problems["case does not match its call"] += 1
                elif outcome == "lost_digit":
                    expected_lost += 1
                    if call is None or (call.outcome, call.outcome_reason) != ("queued", "operator") \
                            or cases_by_call.get(call.id):
                        problems["lost digit: record missing/wrong or a case made"] += 1
    engine.dispose()
    lines.append(f"store: {len(calls)} call records, {total_cases} cases; {expected_ok} ours calls pressed 1, "
                 f"{expected_lost} lost their digit")
    if total_cases != expected_ok:
        problems[f"{total_cases} cases for {expected_ok} calls that pressed 1"] += 1
    for what, n in sorted(problems.items()):
        lines.append(f"  PROBLEM: {what} x{n}")
    if not problems:
        lines.append("  every ours call that pressed 1 has exactly one call record (queued/consultation) and "
                     "exactly one consultation case created by it for its caller")
    return not problems, lines


# ---------------------------------------------------------------------------------------------


def summarize(rounds: list[Round], args, started: str, store_lines: list[str]) -> str:
    measured = [r for r in rounds if r.index > 0]
    by = {v: [r for r in measured if r.variant == v] for v in VARIANTS}
    out = [f"Run {started}: {args.rounds} rounds x {args.calls} calls per variant, {args.inflight} in flight, "
           f"store {'PostgreSQL (fresh schema)' if args.postgres else 'given URL' if args.db else 'SQLite (fresh file)'}, "
           f"server transactions: {args.db_threads}, server event loop: {args.loop or get_settings().event_loop}",
           "",
           "| round | order | ours calls/s | dialplan calls/s | ratio ours/dialplan | lost digits (ours/dialplan) "
           "| Asterisk CPU ms/call (ours/dialplan) | server CPU ms/call | median originate->done ms (ours/dialplan) "
           "| keys pressed per call (ours/dialplan) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    ratios = []
    for o, d in zip(by["ours"], by["dialplan"]):
        ratio = o.rate / d.rate if d.rate else float("nan")
        ratios.append(ratio)
        order = "ours first" if o.index % 2 == 1 else "dialplan first"
        out.append(
            f"| {o.index} | {order} | {o.rate:.0f} | {d.rate:.0f} | {ratio:.2f} | {o.lost_digit}/{d.lost_digit} | "
            f"{o.asterisk_cpu_s / o.calls * 1000:.2f}/{d.asterisk_cpu_s / d.calls * 1000:.2f} | "
            f"{o.server_cpu_s / o.calls * 1000:.2f} | "
            f"{statistics.median(o.latencies_ms or [0]):.0f}/{statistics.median(d.latencies_ms or [0]):.0f} | "
            f"{statistics.mean(o.presses or [0]):.2f}/{statistics.mean(d.presses or [0]):.2f} |")
    if ratios:
        out.append("")
        out.append(f"Median per-round ratio ours/dialplan: {statistics.median(ratios):.2f} "
                   f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}); goal >= 0.80.")
        bad = sum(r.broken + r.missing + r.originate_failed for r in measured)
        out.append(f"Calls broken, missing or not originated: {bad}. Keys per call above 1: a key fell between "
                   f"two commands, or the menu had not finished {PRESS_RETRY_S:g} s after taking it.")
    out += store_lines
    return "\n".join(out)


async def drive(args, settings, db_url: str, server_pid: int) -> tuple[list[Round], MiniAMI]:
    from callcenter.pbx.credentials import ami_secret
    from callcenter.pbx.process import running_pids

    pids = running_pids(settings)
    if not pids:
        raise SystemExit("Asterisk is not running: `.venv/bin/callcenter asterisk start`")
    ami = MiniAMI()
    await ami.connect(settings.ami_host, settings.ami_port, settings.ami_username, ami_secret(settings))
    numbers = Numbers()
    rounds: list[Round] = []
    tag = f"mb{uuid.uuid4().hex[:8]}"  # unique across runs: Asterisk refuses a uniqueid still in use
    try:
        plan = [(v, 0, args.warmup) for v in VARIANTS]
        for i in range(1, args.rounds + 1):
            order = VARIANTS if i % 2 == 1 else tuple(reversed(VARIANTS))
            plan += [(v, i, args.calls) for v in order]
        for variant, index, calls in plan:
            if calls <= 0:
                continue
            rnd = await run_round(ami, variant, index, calls, args.inflight, numbers, pids[0],
                                  server_pid, tag)
            rounds.append(rnd)
            await asyncio.sleep(args.pause)  # let the channels of this round go away (and report)
            rnd.presses = [ami.presses.pop(i, 0) for i in rnd.ids]
            print(describe(rnd), flush=True)
    finally:
        args.originate_failures = ami.originate_failures
        await ami.close()
    return rounds, ami


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    p_serve = sub.add_parser("serve", help="internal: the FastAGI server process")
    p_serve.add_argument("--db", required=True)
    p_serve.add_argument("--port", type=int, required=True)
    p_serve.add_argument("--profile")
    p_serve.add_argument("--db-threads", default="default")
    p_serve.add_argument("--loop", default="uvloop")
    parser.add_argument("--calls", type=int, default=1200, help="calls per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=100, help="calls per variant before round 1 (not counted)")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between rounds")
    parser.add_argument("--db", default="", help="an EMPTY database URL (default: a fresh SQLite file)")
    parser.add_argument("--postgres", default="", metavar="URL",
                        help="run on PostgreSQL: a fresh schema in this database (e.g. "
                             "postgresql+psycopg://postgres@127.0.0.1:5432/test), dropped afterwards")
    parser.add_argument("--profile", default="", help="cProfile the server (main thread) into this file")
    parser.add_argument("--db-threads", choices=("default", "thread", "inline", "one"), default="default",
                        help="where the server runs its transactions: default = as agi.hotline does (SQLite: on "
                             "the event loop when the lock is free, else a worker thread), thread = always a worker "
                             "thread, inline = experiment: always on the event loop, one = one worker thread")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default=None,
                        help="the server's event loop (default: the install's setting, CALLCENTER_EVENT_LOOP)")
    parser.add_argument("--py-spy", default="", help="py-spy (all threads, collapsed stacks) into this file")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.db, args.port, args.profile or None, args.db_threads, args.loop)
        return

    from tests.live.helpers import agi_port_lock

    settings = get_settings()
    check_dialplan(settings)
    made = make_silent_prompts(settings)
    if made:
        print(f"created {made} silent prompt/digit files in the Asterisk root", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="ivr-menu-bench-", dir=Path(settings.state_dir)))
    db_url = args.db or f"sqlite:///{workdir / 'bench.db'}"
    pg_schema = None
    if args.postgres:  # a fresh schema in the given PostgreSQL database, dropped after the run
        from sqlalchemy import text

        from ticketing.store import make_engine

        pg_schema = f"bench_menu_{uuid.uuid4().hex[:10]}"
        admin = make_engine(args.postgres)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{pg_schema}"'))
        admin.dispose()
        sep = "&" if "?" in args.postgres else "?"
        db_url = f"{args.postgres}{sep}options=-csearch_path%3D{pg_schema}"
    started = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load_before = os.getloadavg()
    with agi_port_lock(settings):
        wait_port_free(settings.agi_host, settings.agi_port)
        loop = args.loop or settings.event_loop
        print(f"FastAGI server on the {loop} event loop", flush=True)
        with server_process(db_url, settings.agi_port, workdir / "server.log", args.profile or None,
                            args.db_threads, loop) as proc:
            spy = None
            if args.py_spy:  # sampling profile of the server, all threads (py-spy from PyPI)
                spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(proc.pid),
                                        "-r", "100", "--gil", "--format", "raw", "-o", args.py_spy],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                rounds, _ = asyncio.run(drive(args, settings, db_url, proc.pid))
            finally:
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(30)
    print((proc.tail or "").strip())  # type: ignore[attr-defined]
    try:
        ok, store_lines = check_store(db_url, rounds)
    finally:
        if pg_schema:
            from sqlalchemy import text

            from ticketing.store import make_engine

            admin = make_engine(args.postgres)
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{pg_schema}" CASCADE'))
            admin.dispose()
    print()
    print(summarize(rounds, args, started, store_lines))
    print(f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"server log and store in {workdir}")
    if args.profile:
        import pstats

        print()
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(30)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
