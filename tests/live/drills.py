"""Failure drills (issue 16 items 2-3): a short SIP load through the carrier trunk, one failure in the
middle of it, recovery, then the count a supervisor would ask for.

Pieces reused, not copied: the citizens are SIPp scenarios of tests/live/sipp.py (G.711 + RFC 4733
keys in one RTP stream, from the trunk's address), what Asterisk did with each call is followed on AMI
by benchmarks/sip_load_events.TrunkCalls (answer, AGI commands, queue arrival and reason, hang-up;
here also an operator answering), and the hotline runs as `callcenter run` does, in a process of its
own (tests/live/app_process.py) the drill can kill, freeze and restart.

The report of a drill (`DrillReport`, printed; see docs/failure-drills.md):
- stranded: callers who chose a branch in the menu and hung up without ever reaching the queue or an
  operator (must be 0);
- queued / answered: calls that reached the operator queue / an operator;
- cut: calls the failure itself ended (Asterisk restarted): counted, not stranded;
- records: every trunk call Asterisk saw has one call record, closed (not still "queued" after the
  caller left), with at most one queue entry event and at most one case -- after recovery.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from benchmarks.sip_load_events import EVENT_FILTERS, TrunkCalls
from tests.live import sipp

ROOT = Path(__file__).resolve().parents[2]
# Sessions drilling their own Asterisks at once on one machine share the trunk's address: each takes
# its own SIPp ports (CALLCENTER_DRILL_SLOT=0..9; signalling 25200 + 20*slot.., media 32000 + 3000*slot..).
SLOT = int(os.environ.get("CALLCENTER_DRILL_SLOT", "0"))

# Citizens of a drill: a key early in the greeting (it carries into the menu) so each is in the menu's
# AGI within seconds, then waits in the queue long enough for a failure and its recovery to pass.
OPERATOR = sipp.Behaviour("d-operator", ((3.0, "0"),), 12.0, "operator")
CONSULT = sipp.Behaviour("d-consult", ((3.0, "1"),), 17.5, "consultation")  # makes a case, reads its number
HANGUP = sipp.Behaviour("d-hangup", (), 2.5, "")
# No key in the greeting: in the main menu's Read() (its six prompts, ~20 s, one AGI command that does
# not watch the AGI socket) when the failure comes; 0 during the fifth prompt, if nothing broke.
_MENU_KEY = sipp.MENU_KEY_S + 4 * 3.3
MENU = sipp.Behaviour("d-menu", ((_MENU_KEY, "0"),), _MENU_KEY + 8.0, "operator")
BEHAVIOURS = (OPERATOR, CONSULT, HANGUP, MENU)


class DrillCalls(TrunkCalls):
    """TrunkCalls plus, per call, when an operator answered it (AgentConnect of the queue)."""

    EVENT_CLASSES = TrunkCalls.EVENT_CLASSES + ",agent"
    FILTERS = (*EVENT_FILTERS, "Event: AgentConnect")

    def __init__(self) -> None:
        super().__init__()
        self.answered_by_operator: dict[str, float] = {}
        self.command: dict[str, str] = {}  # the AGI command each call's menu started last

    def on_event(self, msg: dict[str, str]) -> None:
        super().on_event(msg)
        if msg.get("Event") == "AgentConnect":
            self.answered_by_operator.setdefault(msg.get("Uniqueid", ""), time.time())
        elif msg.get("Event") == "AGIExecStart" and msg.get("Uniqueid", "") in self.calls:
            self.command[msg["Uniqueid"]] = " ".join(msg.get("Command", "").split()[:2])

    def in_command(self, command: str) -> int:
        """Calls in the menu whose last AGI command is `command` (e.g. "EXEC Read": still running it)."""
        return sum(1 for uid, c in self.calls.items() if c.in_menu and self.command.get(uid) == command)

    def in_menu(self) -> int:
        """Calls the menu is serving now (answered, an AGI command seen, not queued, not over)."""
        return sum(1 for c in self.calls.values() if c.in_menu and c.prompts)


@dataclass
class DrillReport:
    name: str
    placed: int = 0
    seen: int = 0
    menu_callers: int = 0
    stranded: list[str] = field(default_factory=list)
    queued: int = 0
    answered: int = 0
    cut: int = 0
    operator_calls_dropped: list[str] = field(default_factory=list)  # ended before the caller hung up
    in_menu_at_failure: int = 0
    late: list[float] = field(default_factory=list)  # s from the failure to the queue, callers in the menu then
    late_in: list[str] = field(default_factory=list)  # the same callers: "<s> s in <AGI command at the failure>"
    records_missing: list[str] = field(default_factory=list)
    records_open: list[str] = field(default_factory=list)
    records_duplicated: list[str] = field(default_factory=list)
    records_wrong: list[str] = field(default_factory=list)  # outcome other than what Asterisk did with the call
    reasons: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (f"drill {self.name}: {self.placed} calls placed, {self.seen} seen by Asterisk, {self.menu_callers} "
                f"chose a branch; stranded {len(self.stranded)}; reached the queue {self.queued}, an operator "
                f"{self.answered}; cut by the failure {self.cut}; {self.in_menu_at_failure} in the menu at the "
                f"failure, {len(self.late)} of them queued within {max(self.late, default=0):.1f} s "
                f"({', '.join(each for _, each in sorted(zip(self.late, self.late_in)))}); call records missing "
                f"{len(self.records_missing)}, left open {len(self.records_open)}, duplicated "
                f"{len(self.records_duplicated)}, wrong {len(self.records_wrong)}; operator calls dropped "
                f"{len(self.operator_calls_dropped)}; queue reasons {dict(sorted(self.reasons.items()))}")

    def assert_clean(self) -> None:
        assert self.seen >= self.placed - self.cut, self.line()
        assert not self.stranded, self.line() + f"; stranded: {self.stranded}"
        assert not self.operator_calls_dropped, self.line() + f"; dropped: {self.operator_calls_dropped}"
        assert not (self.records_missing or self.records_open or self.records_duplicated or self.records_wrong), (
            self.line() + f"; missing {self.records_missing[:5]}, open {self.records_open[:5]}, "
            f"duplicated {self.records_duplicated[:5]}, wrong {self.records_wrong[:5]}")


class AppProcess:
    """The hotline process (tests/live/app_process.py) with the drill's settings in its environment."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 90.0) -> None:
        self.starts += 1
        with open(self.log_path, "a") as log:
            log.write(f"---- start {self.starts}\n")
            log.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.live.app_process"], cwd=ROOT, env=self.env,
                                         stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().strip() if ready else ""
        if line != "ready":
            self.stop()
            raise RuntimeError(f"the hotline did not start: {self.log_path.read_text()[-3000:]}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def wait_dead(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Drill:
    """One drill's load, observer and hotline: `async with Drill(...) as d:`."""

    def __init__(self, name: str, settings, workdir: Path, db_url: str, *, env: dict[str, str] | None = None,
                 prefix: str = "139") -> None:
        self.name, self.settings, self.workdir, self.db_url = name, settings, workdir, db_url
        self.prefix = prefix
        self.env = {**os.environ, "CALLCENTER_DATABASE_URL": db_url, "CALLCENTER_AFTER_CALL_WORK_S": "0",
                    "CALLCENTER_LOG_FILE": str(workdir / "app.log"), "CALLCENTER_EVENT_LOOP": "asyncio",
                    **(env or {})}
        self.app = AppProcess(self.env, workdir / "app-console.log")
        self.calls = DrillCalls()
        self.sipp: list[tuple[sipp.Behaviour, str, asyncio.subprocess.Process]] = []
        self.placed = 0
        self.failed_at: float | None = None
        self.in_menu_at_failure: dict[str, str] = {}  # uniqueid -> the AGI command it was in
        self.cut: set[str] = set()

    async def __aenter__(self) -> Self:
        await self.observe()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for _, _, proc in self.sipp:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await asyncio.to_thread(self.app.stop)
        await self.calls.close()

    async def observe(self) -> None:
        """(Re)connect the observer's AMI session (after an Asterisk restart: the calls seen stay)."""
        from callcenter.pbx.credentials import ami_secret

        s = self.settings
        await self.calls.connect(s.ami_host, s.ami_port, s.ami_username, ami_secret(s))

    async def start_app(self) -> None:
        await asyncio.to_thread(self.app.start)

    async def place_calls(self, counts: dict[sipp.Behaviour, int] | None = None, over_s: float = 4.0) -> None:
        """SIPp, one process per behaviour, its calls spread over `over_s` seconds."""
        counts = counts or {OPERATOR: 4, CONSULT: 4, HANGUP: 2}
        scenarios = sipp.prepare(self.workdir / "sipp", tuple(counts))
        target = f"{self.settings.sip_host}:{self.settings.sip_port}"
        local_ip = self.settings.sip_trunk_match.split(",")[0].split("/")[0]
        for b, n in counts.items():
            i = len(self.sipp)  # a later batch of the same drill: its own ports and caller prefix
            caller = f"{self.prefix}{i}"
            argv = sipp.sipp_argv(scenarios[b.name], target=target, local_ip=local_ip, local_port=25200 + 20 * SLOT + i,
                                  media_port=32000 + 3000 * SLOT + 600 * i, caller_prefix=caller, calls=n,
                                  every_ms=max(1, round(over_s * 1000 / n)))
            proc = await asyncio.create_subprocess_exec(*argv, cwd=self.workdir, stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL)
            self.sipp.append((b, caller, proc))
            self.placed += n

    async def until(self, what, timeout: float = 30.0, every: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            if time.monotonic() > deadline:
                raise TimeoutError(f"drill {self.name}: condition not met within {timeout} s")
            await asyncio.sleep(every)

    async def menu_busy(self, callers: int = 2) -> None:
        """Until the menu is serving `callers` of ours: the moment to break something."""
        await self.until(lambda: self.calls.in_menu() >= callers)

    def failure(self) -> None:
        """Mark the failure's moment (and who was in the menu then)."""
        self.failed_at = time.time()
        self.in_menu_at_failure = {c.uniqueid: self.calls.command.get(c.uniqueid, "-")
                                   for c in self.calls.calls.values() if c.in_menu}

    def cut_now(self) -> None:
        """Every call of ours up now ends with the failure about to happen (Asterisk going down):
        counted as cut, not stranded (the observer's AMI session may go down before their hang-up)."""
        self.cut |= {c.uniqueid for c in self.calls.calls.values() if c.ended is None}

    async def add_operators(self, extensions: tuple[str, ...]) -> None:
        """Operators in the queue as Asterisk has them (the hotline adopts members it finds)."""
        for ext in extensions:
            reply = await self.calls.action("QueueAdd", Queue="hotline-12345", Interface=f"PJSIP/op{ext}")
            assert reply.get("Response") == "Success", reply

    async def calls_over(self, timeout: float = 90.0) -> None:
        """Until every SIPp process ended and Asterisk has no call of ours up."""
        await asyncio.wait_for(asyncio.gather(*(p.wait() for _, _, p in self.sipp)), timeout)
        await self.until(lambda: all(c.ended is not None for c in self.calls.calls.values()
                                     if c.uniqueid not in self.cut), timeout=20)

    # -- the count ---------------------------------------------------------------------------
    def _behaviour(self, caller: str) -> sipp.Behaviour | None:
        for b, prefix, _ in self.sipp:
            if caller.startswith(prefix) and len(caller) > len(prefix):
                return b
        return None

    def report(self) -> DrillReport:
        r = DrillReport(self.name, placed=self.placed)
        mine = {uid: c for uid, c in self.calls.calls.items() if self._behaviour(c.caller) is not None}
        r.seen, r.cut = len(mine), len(self.cut & mine.keys())
        r.in_menu_at_failure = len(self.in_menu_at_failure.keys() & mine.keys())
        for uid, c in mine.items():
            b = self._behaviour(c.caller)
            operator = uid in self.calls.answered_by_operator
            r.queued += c.queued is not None
            r.answered += operator
            if c.queued is not None:
                r.reasons[c.reason] = r.reasons.get(c.reason, 0) + 1
            if b.menu_call and c.answered is not None:
                r.menu_callers += 1
                if c.queued is None and not operator and uid not in self.cut:
                    r.stranded.append(f"{b.name} {uid}")
            if operator and c.ended is not None and uid not in self.cut \
                    and c.ended - (c.answered or c.created) < b.hangup_s - 1.0:
                r.operator_calls_dropped.append(f"{b.name} {uid} ended {c.ended - (c.answered or c.created):.1f} s "
                                                f"after the answer, at {c.ended - (self.failed_at or 0):.1f} s")
            if uid in self.in_menu_at_failure and c.queued is not None and self.failed_at is not None:
                r.late.append(max(0.0, c.queued - self.failed_at))
                r.late_in.append(f"{r.late[-1]:.1f} s in {self.in_menu_at_failure[uid]}")
        return r

    async def check_records(self, report: DrillReport, timeout: float = 45.0) -> DrillReport:
        """Wait (the call log may be catching up after an outage) until every call has its record
        closed, then fill the report's record counts."""
        uids = {uid for uid, c in self.calls.calls.items() if self._behaviour(c.caller) is not None}
        deadline = time.monotonic() + timeout
        while True:
            missing, open_, duplicated, outcomes = await asyncio.to_thread(records_of, self.db_url, uids)
            if not (missing or open_) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        report.records_missing, report.records_open, report.records_duplicated = missing, open_, duplicated
        for uid, outcome in outcomes.items():
            # an operator answered (AgentConnect) <-> the record says answered (or completed)
            if (uid in self.calls.answered_by_operator) != (outcome in ("answered", "completed")):
                report.records_wrong.append(f"{uid}: {outcome}")
        print(report.line(), flush=True)
        return report


def records_of(db_url: str, uids: set[str]) -> tuple[list[str], list[str], list[str], dict[str, str | None]]:
    """(calls with no record, records not closed, calls recorded more than once, uniqueid -> outcome)
    of these uniqueids."""
    from sqlalchemy import func, select

    from ticketing.models import Call, CallEvent, Case
    from ticketing.store import make_engine

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Call.id, Call.uniqueid, Call.linkedid, Call.outcome)
                                .where(Call.linkedid.in_(uids) | Call.uniqueid.in_(uids))).all()
            ids = [r.id for r in rows]
            queued = dict(conn.execute(select(CallEvent.call_id, func.count()).where(
                CallEvent.call_id.in_(ids), CallEvent.kind == "queued").group_by(CallEvent.call_id)).all())
            cases = dict(conn.execute(select(Case.created_by_call_id, func.count()).where(
                Case.created_by_call_id.in_(ids)).group_by(Case.created_by_call_id)).all())
    finally:
        engine.dispose()
    by_linked: dict[str, list] = {}
    for r in rows:
        by_linked.setdefault(r.linkedid or r.uniqueid, []).append(r)
    missing = sorted(uids - by_linked.keys())
    open_ = sorted(r.uniqueid for r in rows if r.outcome in (None, "queued"))
    duplicated = sorted({lid for lid, rs in by_linked.items() if len(rs) > 1}
                        | {r.uniqueid for r in rows if queued.get(r.id, 0) > 1 or cases.get(r.id, 0) > 1})
    return missing, open_, duplicated, {r.uniqueid: r.outcome for r in rows}
