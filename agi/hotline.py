"""AGI entry points of the hotline: `ivr/main` runs the citizen's voice menu, `ivr/survey` the
回访 callback survey (R7.4) on a call placed by callback/runner.py.

Each call gets its own CallContext (one database session, used in short transactions so a
case created in the menu is durable even if the caller hangs up a second later). The call is
logged (A2) from its first command to its outcome.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ivr_flows import PROMPTS_PATH, flow_path
from ivr_flows.actions import status_prompt_name
from ivr_flows.engine import Flow, FlowRunner, load_flow, load_prompts
from ticketing import audit, calls
from ticketing.audit import Actor
from ticketing.dialing import MOBILE
from ticketing.domain import Domain
from ticketing.enums import OPEN_CASE_STATUSES, CaseKind, CaseStatus, Channel, Role
from ticketing.models import Case
from ticketing.numbering import normalize_case_number
from ticketing.privacy import mask_phone, mask_text
from ticketing.store import deadline_of
from ticketing.workflow import Workflow
from ticketing.writer import Run, on_cursor, on_session

from .callrecord import caller_of, open_call_of
from .channel import AGIChannel, AGIHangup
from .driver import AGIDriver
from .ledgers import NoticeLedger, SurveyLedger
from .loopdb import (
    CallStoreWork,
    LockTaken,
    LoopConnection,
    LoopConnections,
    lock_taken,
    nowait_sessions_for,
)

log = logging.getLogger("agi.hotline")
IVR_ACTOR = Actor(user_id=None, name="ivr", role=Role.SYSTEM.value)
KIND_TITLES = {"consultation": "电话咨询", "suggestion": "电话建议批评", "complaint": "电话投诉举报",
               "urgent_help": "电话紧急求助"}


# The open-cases lookup runs on every call: statements built once (building one costs more than
# running it), columns instead of Case objects. R7.3c: confidential cases are never spoken -- the
# calling number may not be the reporter's own line.
_OPEN_CASES = (Case.citizen_phone == bindparam("caller"), Case.status.in_(OPEN_CASE_STATUSES),
               Case.confidential.is_(False))
_LATEST_OPEN_CASE = select(Case.number, Case.status).where(*_OPEN_CASES).order_by(Case.id.desc()).limit(1)
_OPEN_CASE_COUNT = select(func.count()).select_from(Case).where(*_OPEN_CASES)


def channel_for_number(number: str) -> Channel:
    return Channel.MOBILE if MOBILE.match(number or "") else Channel.LANDLINE


@dataclass
class Hotline:
    """What every call shares: config, sessions, flows."""

    domain: Domain
    session_factory: sessionmaker[Session]
    recordings_dir: str
    flows: dict[str, Flow]
    prompts: set[str]
    # SQLite file: sessions that try a transaction on the event loop without waiting for the lock
    nowait_sessions: sessionmaker[Session] | None = None
    survey: SurveyLedger | None = None  # needed by ivr/survey only
    notices: NoticeLedger | None = None  # needed by ivr/notify only
    # a file Asterisk wrote, by the path Asterisk knows it under (None if absent): fax/received
    read_file: Callable[[str], bytes | None] | None = None
    _loop_db: LoopConnection | None = None
    _pg_db: LoopConnections | None = None

    @property
    def direct_db(self) -> LoopConnection | LoopConnections | None:
        """Where the menu's prepared statements run: the event loop's own connection on a SQLite
        file, asyncpg connections on the event loop on PostgreSQL (as many as the store's pool
        size); None (in-memory SQLite): a Session."""
        if self.loop_db is not None:
            return self.loop_db
        engine = self.session_factory.kw.get("bind")
        if self._pg_db is None and engine is not None and engine.dialect.name == "postgresql":
            self._pg_db = LoopConnections(engine, engine.pool.size())
        return self._pg_db

    async def close(self) -> None:
        """Give back the menu's own connections."""
        if self._loop_db is not None:
            self._loop_db.close()
        if self._pg_db is not None:
            await self._pg_db.close()

    @property
    def loop_db(self) -> LoopConnection | None:
        """The event loop's own DBAPI connection for the call record and open-cases statements
        (SQLite file only; see LoopConnection)."""
        if self._loop_db is None and self.nowait_sessions is not None:
            self._loop_db = LoopConnection(self.nowait_sessions.kw["bind"])
        return self._loop_db

    @cached_property
    def store_deadline_s(self) -> float | None:
        """How long a call waits for one transaction (a network store: ticketing.store.StoreDeadlines)."""
        return deadline_of(self.session_factory.kw.get("bind"))

    @cached_property
    def intake(self) -> Workflow:
        """The rules and clock for cases created on the loop's connection (`Workflow.accept_on`)."""
        return self.domain.workflow(None)

    @classmethod
    def create(cls, domain: Domain, session_factory: sessionmaker[Session], recordings_dir: str, *,
               inline_sqlite: bool = True, survey: SurveyLedger | None = None,
               notices: NoticeLedger | None = None,
               read_file: Callable[[str], bytes | None] | None = None) -> Hotline:
        flows = {name: load_flow(flow_path(name)) for name in ("main", "survey", "notify", "citizen_notice")}
        return cls(domain, session_factory, recordings_dir, flows, set(load_prompts(PROMPTS_PATH)),
                   nowait_sessions_for(session_factory) if inline_sqlite else None, survey, notices,
                   read_file=read_file)


class CallContext(CallStoreWork):
    """One call's database session and the actions the flow may call."""

    def __init__(self, hotline: Hotline, caller: str, callback_key: str = ""):
        self.hotline = hotline
        self.caller = caller
        self.callback_key = callback_key  # the survey's attempt (callback/attempts.py) or the notice's try
        self._session: Session | None = None  # made when first needed: most calls never need one
        self._nowait_session: Session | None = None
        self._inline = hotline.nowait_sessions is not None  # SQLite file: transactions tried on the loop
        self.call_id: int | None = None
        self.case_id: int | None = None
        self.case_number: str | None = None  # the case created or looked up (the call's log line)
        # The call record is written by the call's first transaction (or its closing one), not by
        # a transaction of its own: one thread hop and one commit fewer per call.
        self._open_call: dict[str, Any] | None = None  # calls.open_call's arguments
        self._open_cases: dict | None = None  # looked up in the call's first transaction (main menu)

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = self.hotline.session_factory()
        return self._session

    @property
    def _nowait(self) -> Session:
        if self._nowait_session is None:
            self._nowait_session = self.hotline.nowait_sessions()
        return self._nowait_session

    def close(self) -> None:
        for session in (self._session, self._nowait_session):
            if session is not None:
                self.when_store_idle(session.close)

    def open_call_with_first_tx(self, **open_call: Any) -> None:
        """The call record (calls.open_call's arguments) is written by the next transaction."""
        self._open_call = open_call

    async def run(self, fn: Callable[[Run], Any], *, writes: int | None = None) -> Any:
        """fn(run) in its own transaction, `run` a statement runner (ticketing.writer); the call
        record is opened in the same transaction if it is not yet (so fn sees ctx.call_id). Prepared
        statements on the hotline's direct connection (loopdb): on a SQLite file right here on the
        event loop while the write lock is free, on PostgreSQL on the event loop too (asyncpg); else,
        and when another SQLite connection holds the lock, through a Session in a worker thread.
        `writes`: fn's writing statements if 0 or 1 (one write in all, the call record's counted:
        loopdb._Held.run)."""
        db = self.hotline.direct_db
        if isinstance(db, LoopConnection):
            try:
                return self._direct(db, fn)
            except LockTaken:
                pass  # nothing done: someone else writes; wait for the lock off the event loop
        elif db is not None:
            return await self.store_work(lambda: db.enter(lambda held: self._direct(held, fn, writes),
                                                          self.hotline.store_deadline_s))
        return await self.store_thread(self.hotline.store_deadline_s, self.run_tx, lambda s: fn(on_session(s)))

    def _direct(self, db: Any, fn: Callable[[Run], Any], writes: int | None = None) -> Any:
        """fn(run) in a transaction on `db` (a LoopConnection, or a LoopConnections connection)."""
        opened = self.call_id is None and self._open_call is not None
        one_write = writes is not None and writes + opened <= 1  # calls.open_call: one INSERT (+ a read)

        def body(cursor):
            run = on_cursor(db, cursor)
            if opened:
                self.call_id = calls.open_call(run, **self._open_call)
            return fn(run)
        try:
            result = db.run(body, one_write)
        except BaseException:
            audit.discard_uncommitted()
            if opened:
                self.call_id = None  # rolled back with fn: the next transaction opens it again
            raise
        audit.announce_committed()  # A1: the checkpoint of an event written on the cursor
        if opened:
            self._open_call = None
        return result

    async def tx(self, fn: Callable[[Session], Any]) -> Any:
        """fn(session) in its own transaction (the call record opened in it if not yet): on a
        SQLite file first right here if the write lock is free (see nowait_sessions_for), else,
        and on other databases, in a worker thread."""
        if self._inline:
            try:
                return self.run_tx(fn, self._nowait)
            except OperationalError as exc:
                if not lock_taken(exc):
                    raise
                # rolled back: someone else writes; wait for the lock off the event loop
        return await self.store_thread(self.hotline.store_deadline_s, self.run_tx, fn)

    def run_tx(self, fn: Callable[[Session], Any], session: Session | None = None) -> Any:
        """The transaction itself, on the calling thread."""
        session = session or self.session
        opened = self.call_id is None and self._open_call is not None
        try:
            if opened:
                self.call_id = calls.open_call(session, **self._open_call)
            result = fn(session)
            session.commit()
            if opened:
                self._open_call = None
            return result
        except BaseException:
            session.rollback()
            if opened:
                self.call_id = None  # rolled back with fn: the next transaction opens it again
            raise

    # ---- the actions ivr_flows/main.yaml calls ---------------------------------------------
    def actions(self) -> dict[str, Callable]:
        return {
            "caller_open_cases": self.caller_open_cases,
            "in_service_hours": self.in_service_hours,
            "create_case": self.create_case,
            "find_case": self.find_case,
            "leave_message": self.leave_message,
            "record_satisfaction": self.record_satisfaction,
            "acknowledge_notice": self.acknowledge_notice,
        }

    async def caller_open_cases(self, caller: str) -> dict:
        preloaded, self._open_cases = self._open_cases, None
        if preloaded is not None and caller == self.caller:
            return preloaded
        return await self.run(lambda run: self._open_cases_from(run, caller), writes=0)

    def preload_open_cases(self, run: Run) -> None:
        """The main menu's open-cases lookup, run in the call's first transaction (the one that opens
        the call record, before the greeting) instead of a transaction of its own after it: one
        commit and one thread hop fewer per call. The lookup answers for the moment the call came in."""
        self._open_cases = self._open_cases_from(run, self.caller)

    def _open_cases_from(self, run: Run, caller: str) -> dict:
        if not caller:
            return {"count": 0, "latest_number": "", "latest_status_prompt": ""}
        latest = run(_LATEST_OPEN_CASE, {"caller": caller}).fetchone()
        if latest is None:  # most callers: no count query needed
            return {"count": 0, "latest_number": "", "latest_status_prompt": ""}
        count = run(_OPEN_CASE_COUNT, {"caller": caller}).fetchone()[0]
        number, status = latest[0], latest[1]
        return {"count": count, "latest_number": number.replace("-", ""),
                "latest_status_prompt": status_prompt_name(CaseStatus(status).value, self.hotline.prompts)}

    async def in_service_hours(self) -> dict:
        return {"open": self.hotline.domain.policy.ivr_open_at(self.hotline.domain.clock())}

    async def create_case(self, caller: str, kind: str) -> dict:
        kind = CaseKind(kind)

        def request() -> dict[str, Any]:  # read in the transaction: it may open the call record
            return dict(kind=kind, channel=channel_for_number(caller), title=KIND_TITLES[kind.value],
                        description="来电经语音菜单选择，详情待话务员记录。", citizen_phone=caller,
                        call_id=self.call_id)

        self.case_id, number = await self.run(lambda run: self.hotline.intake.accept_on(run, IVR_ACTOR, **request()))
        self.case_number = number
        return {"case_number": number.replace("-", "")}

    async def find_case(self, number: str) -> dict:
        normalized = normalize_case_number(number or "")

        def q(s: Session):
            if normalized is None:
                return {"found": False, "status_prompt": "", "deadline": None}
            case = s.execute(select(Case).where(Case.number == normalized)).scalar_one_or_none()
            if case is None:
                return {"found": False, "status_prompt": "", "deadline": None}
            self.case_id, self.case_number = case.id, case.number
            deadline = case.deadline_at.astimezone(self.hotline.domain.calendar.tz).date().isoformat() if case.deadline_at else None
            return {"found": True, "status_prompt": status_prompt_name(case.status.value, self.hotline.prompts),
                    "deadline": deadline,
                    "deadline_provisional": "deadline_at" in (case.provisional_deadlines or {})}
        return await self.tx(q)

    async def record_satisfaction(self, case_number: str, value: str) -> dict:
        """R7.4/R7.5: the survey's answer, stored on the case with this call (Hotline.survey)."""
        def store(s: Session):
            result = self.hotline.survey.record_survey_answer(s, self.hotline.domain, key=self.callback_key,
                                                              case_number=case_number, value=value, call_id=self.call_id)
            case = self.hotline.domain.workflow(s).get_case(case_number)
            self.case_id, self.case_number = case.id, case.number
            return result
        return await self.tx(store)

    async def acknowledge_notice(self) -> dict:
        """Key 1 on a voice notice: recorded against the notice of this call's key (Hotline.notices)."""
        return {"acknowledged": await self.tx(lambda s: self.hotline.notices.acknowledge(
            s, self.hotline.domain, self.callback_key, call_id=self.call_id))}

    async def leave_message(self, caller: str, recording: str) -> dict:
        def create(s: Session):
            wf = self.hotline.domain.workflow(s)
            case = wf.accept(IVR_ACTOR, kind=CaseKind.CONSULTATION, channel=channel_for_number(caller),
                             title="非服务时间留言", description=f"来电人在服务时间外留言，录音：{Path(recording).name}，请回电。",
                             citizen_phone=caller, call_id=self.call_id)
            return case.id, case.number
        self.case_id, number = await self.tx(create)
        self.case_number = number
        return {"case_number": number.replace("-", "")}


async def run_flow(hotline: Hotline, channel: AGIChannel, flow_name: str, variables: dict | None = None,
                   purpose: str = "hotline", direction: str = "inbound", callback_key: str = "",
                   on_finish: Callable[[Session, CallContext, Any], Any] | None = None,
                   preload: Callable[[CallContext, Run], None] | None = None) -> Any:
    """Run one flow for one call and log the call (A2); the dialplan reads IVR_NEXT afterwards.
    `preload(ctx, run)` (it only reads) runs in the call's first transaction, the one that opens the call record
    (CallContext.run); `on_finish(session, ctx, result)` in its closing one. Returns the FlowResult (None if the flow
    broke)."""
    uniqueid, caller = channel.request.env.get("agi_uniqueid", ""), caller_of(channel)
    ctx = CallContext(hotline, caller, callback_key)
    now = hotline.domain.clock
    try:
        started = now()
        await open_call_of(ctx, channel, started, direction=direction, purpose=purpose)
        # A2: the call is on record from its first second, even if this server dies mid-greeting.
        await ctx.run(lambda run: preload(ctx, run) if preload is not None else None, writes=0)
        driver = AGIDriver(channel, recordings_dir=hotline.recordings_dir, uniqueid=uniqueid, prompt_dir=AGIDriver.prompt_dir_for(channel.request.query))
        try:
            runner = FlowRunner(hotline.flows[flow_name], driver, ctx.actions(),
                                {"caller": caller, **(variables or {})}, mask_text=mask_text)
            result = await runner.run()
        except Exception:
            await _finish(ctx, now, outcome="queued", reason="error", path=[], digits=[], recording=None,
                          on_finish=on_finish, result=None, started=started, uniqueid=uniqueid)
            raise  # the server sends the caller to the queue
        outcome, reason = result.outcome, result.reason
        if not channel.hungup:
            try:
                # One SET VARIABLE instead of three; the dialplan splits it (ivr_result_value).
                await channel.set_variable(RESULT_VARIABLE, ivr_result_value(outcome, reason, ctx.case_id))
            except AGIHangup:
                if outcome == "queued":
                    outcome, reason = "abandoned", "hangup"
        await _finish(ctx, now, outcome=outcome, reason=reason, path=result.path, digits=result.digits,
                      recording=driver.recorded[-1] if driver.recorded else None, on_finish=on_finish, result=result,
                      started=started, uniqueid=uniqueid)
        return result
    finally:
        ctx.close()


RESULT_VARIABLE = "IVR_RESULT"
_UNSAFE_IN_RESULT = re.compile(r"[^0-9A-Za-z_.-]")


def ivr_result_value(outcome: str, reason: str | None, case_id: int | None) -> str:
    """The menu's answer to the dialplan as one channel variable, ``<next>|<queue reason>|<case id>``:
    ``queue|consultation|42`` or ``done||``. The dialplan after AGI() (asterisk/extensions.conf
    [citizen-in]) cuts it into IVR_NEXT (only ``done`` hangs up, anything else queues),
    IVR_QUEUE_REASON (the CallcenterQueued Reason) and CALLCENTER_CASE_ID (the screen pop's
    fallback). The reason is reduced to [0-9A-Za-z_.-] so it can neither add a field nor break the
    dialplan application arguments it lands in."""
    if outcome != "queued":
        return "done||"
    reason = _UNSAFE_IN_RESULT.sub("_", reason or "operator")[:64]
    return f"queue|{reason}|{case_id if case_id is not None else ''}"


async def _finish(ctx: CallContext, now, *, outcome, reason, path, digits, recording, on_finish=None,
                  result=None, started=None, uniqueid="") -> None:
    if ctx.call_id is None and ctx._open_call is None:
        return
    ended = now()
    if not ctx.store_missed:  # else the call log closes the record from Asterisk's events once it is back
        await _write_finish(ctx, ended, outcome=outcome, reason=reason, path=path, digits=digits,
                            recording=recording, on_finish=on_finish, result=result)
    _log_call(ctx, uniqueid, outcome, reason, path, (ended - started).total_seconds() if started else None)


def _log_call(ctx: CallContext, uniqueid: str, outcome: str, reason: str | None, path: list[str],
              seconds: float | None) -> None:
    """The call's one INFO line, once its record is finished (it hung up, or left the menu for the
    queue): caller masked, path through the menu, outcome, case, time in the menu."""
    caller = mask_phone(ctx.caller) or "unknown"
    log.info("call %s (%s) from %s: %s%s via %s%s%s", ctx.call_id, uniqueid, caller, outcome,
             f" ({reason})" if reason else "", ">".join(path) or "-",
             f", case {ctx.case_number}" if ctx.case_number else "", f", {seconds:.0f} s" if seconds is not None else "",
             extra={"call_id": ctx.call_id, "uniqueid": uniqueid, "caller": caller, "outcome": outcome,
                    "reason": reason, "path": list(path), "case_number": ctx.case_number,
                    "duration_s": None if seconds is None else round(seconds, 1)})


async def _write_finish(ctx: CallContext, ended, *, outcome, reason, path, digits, recording, on_finish,
                        result) -> None:
    def finish(run: Run):
        # ctx.run / ctx.tx opened the record in this same transaction if no earlier one did
        calls.finish_call(run, ctx.call_id, outcome=outcome, reason=reason, ended_at=ended, flow_path=path,
                          digits=digits, case_id=ctx.case_id, recording_path=recording)

    if on_finish is None:
        await ctx.run(finish, writes=1)  # calls.finish_call: one UPDATE
        return

    def finish_and_settle(s: Session):  # the survey's settlement is ORM work (callback.attempts)
        finish(on_session(s))
        on_finish(s, ctx, result)
    await ctx.tx(finish_and_settle)


async def run_survey(hotline: Hotline, channel: AGIChannel) -> None:
    """R7.4: the callback survey on a call placed by callback/runner.py. The dialplan passes the
    attempt's idempotency key and the case number (`ivr/survey?key=...&case=...`)."""
    if hotline.survey is None:
        raise RuntimeError("ivr/survey needs the callback ledger: Hotline.create(..., survey=...)")
    finish_survey = hotline.survey.finish_survey
    key = channel.request.query.get("key", "")
    case_number = channel.request.query.get("case", "")
    if not case_number:
        log.warning("survey call %s without a case number; hanging up", channel.request.env.get("agi_uniqueid", ""))
        return

    def settle(s: Session, ctx: CallContext, result) -> None:
        satisfaction = result.variables.get("satisfaction") if result is not None else None
        reason = "no key pressed" if result is not None and result.reason != "hangup" else "hung up before rating"
        if result is None:
            reason = "survey failed"
        finish_survey(s, hotline.domain, key=key, satisfaction=satisfaction, call_id=ctx.call_id, reason=reason)

    await run_flow(hotline, channel, "survey", {"case_number": case_number}, purpose="callback",
                   direction="outbound", callback_key=key, on_finish=settle)


def main_flow_variables(policy) -> dict[str, Any]:
    """What the host gives ivr_flows/main.yaml besides $caller (its `inputs`)."""
    return {"mode": policy.ivr.mode}


def router_for(hotline: Hotline) -> dict[str, Callable]:
    async def ivr_main(channel: AGIChannel) -> None:
        await run_flow(hotline, channel, "main", main_flow_variables(hotline.domain.policy),
                       preload=CallContext.preload_open_cases)

    async def ivr_survey(channel: AGIChannel) -> None:
        await run_survey(hotline, channel)

    async def ivr_notify(channel: AGIChannel) -> None:
        from .notify import run_notify
        await run_notify(hotline, channel)

    async def ivr_waiting(channel: AGIChannel) -> None:  # self-service from the operator queue
        from .waiting import run_waiting
        await run_waiting(hotline, channel)

    async def health(channel: AGIChannel) -> None:
        # the watchdog's probe (callcenter/agi_watchdog.py): one command proves the loop answers
        await channel.set_variable("CALLCENTER_AGI_ALIVE", "1")

    async def fax_received(channel: AGIChannel) -> None:
        from agi.fax import receive_fax  # Pillow is loaded only where faxes arrive

        await receive_fax(hotline, channel)

    return {"ivr/main": ivr_main, "ivr/survey": ivr_survey, "ivr/notify": ivr_notify, "ivr/waiting": ivr_waiting,
            "health": health, "fax/received": fax_received}
