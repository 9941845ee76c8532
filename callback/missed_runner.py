"""Places the 漏接回拨 calls (issue 14 item 4): a free operator's phone rings first; once the operator
answers, the dialplan notes the call in its ledger and dials the citizen, bridged (`[outbound-callback]`,
the same ledger as the 回访 survey's); the operator's screen-pop says why (callcenter/callcontrol/
screenpop.py finds the attempt by the call's channel id). One call per free operator at a time.

Exactly once, by the survey runner's rules (callback/runner.py): the attempt is committed `dialing`
BEFORE the Originate, which the port sends at most once; certainly not sent, or the operator did not
answer (the citizen was not dialled) -> back to `scheduled`, same key; outcome unknown -> left for
`reconcile`, which asks Asterisk what became of the call (callback/fate.py): still up -> watched to
its end; the ledger entry there -> the citizen was dialled, outcome unknown (a try that missed);
neither -> never dialled, back to `scheduled`. The store side is callback/missed.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from callback import missed as M
from callback.fate import DIALLED, NEVER, UP, fate
from callback.pbx import ANSWERED, MissedCallPbx, NotSent, OutcomeUnknown, PbxError
from ticketing.domain import Domain
from ticketing.store import session_scope

log = logging.getLogger("callback.missed")


@dataclass
class MissedOptions:
    context: str = "outbound-callback"
    caller_id: str = '"12345" <12345>'
    channel_prefix: str = ""      # namespace for channel ids on a shared Asterisk (tests)
    settle_seconds: float = 3.0   # after start-up, before a dead process's calls are settled
    end_grace: float = 2.0        # after the hang-up, how long the call's end event (dial status) may lag
    check_seconds: float = 5.0    # a call watched is looked for in Asterisk this often (a missed hang-up)
    operator_rest: float = 60.0   # an operator who let the phone ring out is not rung again before this


@dataclass
class MissedStats:
    placed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reconciled: dict[str, int] = field(default_factory=dict)

    def count(self, what: dict[str, int], key: str) -> None:
        what[key] = what.get(key, 0) + 1


class MissedCallbackRunner:
    def __init__(self, domain: Domain, sessions: sessionmaker[Session], pbx: MissedCallPbx,
                 options: MissedOptions | None = None, *, on_result: Callable[[str, str], Any] | None = None):
        self.domain = domain
        self.sessions = sessions
        self.pbx = pbx
        self.opts = options or MissedOptions()
        self.on_result = on_result
        self.stats = MissedStats()
        self._tasks: dict[int, asyncio.Task] = {}   # attempt id -> its call (placed or adopted)
        self._operators: dict[int, str] = {}        # attempt id -> the operator it rings
        self._hangups: dict[str, asyncio.Event] = {}
        self._ends: dict[str, str] = {}             # channel id -> dial status of its end event
        self._resting: dict[str, float] = {}        # operator -> not rung again before (monotonic)
        self._subs: list[Any] = []
        self._started_at = time.monotonic()
        self._lock = asyncio.Lock()
        self._stopping = False

    # ---- lifecycle ---------------------------------------------------------------------------
    def attach(self) -> None:
        if not self._subs:
            self._subs = [self.pbx.on_hangup(self._on_hangup), self.pbx.on_callback_end(self._on_end)]

    def halt(self) -> None:
        """No new calls (stepping down); calls up go on in Asterisk, a successor adopts them."""
        self._stopping = True

    def resume(self) -> None:
        self._stopping = False

    async def stop(self) -> None:
        self.halt()
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for sub in self._subs:
            sub.close()
        self._subs = []

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def _channel_id(self, key: str) -> str:
        return f"{self.opts.channel_prefix}{key}"

    def _on_hangup(self, channel_id: str) -> None:
        ev = self._hangups.get(channel_id)
        if ev is not None:
            ev.set()

    def _on_end(self, channel_id: str, dial_status: str) -> None:
        if channel_id in self._hangups:
            self._ends[channel_id] = dial_status

    async def _tx(self, fn: Callable[[Session], Any]) -> Any:
        def run():
            with session_scope(self.sessions) as s:
                return fn(s)
        return await asyncio.to_thread(run)

    # ---- the sweep ---------------------------------------------------------------------------
    async def sweep(self) -> int:
        """Plan, settle a dead process's calls, and ring the free operators. Returns calls placed."""
        if self._lock.locked() or self._stopping:
            return 0
        async with self._lock:
            self.attach()
            await self._tx(lambda s: M.plan(s, self.domain))
            await self.reconcile()
            if not self.pbx.connected:
                return 0
            try:
                free = await self.pbx.free_operators(timeout=5)
            except PbxError as exc:
                log.warning("missed-call callbacks: cannot ask for free operators (%s)", exc)
                return 0
            now = time.monotonic()
            ringing = set(self._operators.values())
            placed = 0
            for operator in free:
                if self._stopping:
                    break
                if operator in ringing or self._resting.get(operator, 0) > now:
                    continue
                claimed = await self._tx(lambda s, op=operator: M.claim(s, self.domain, op))
                if claimed is None:
                    break
                self._place(claimed)
                placed += 1
            return placed

    def _place(self, c: M.Claimed) -> None:
        chan = self._channel_id(c.key)
        self._hangups[chan] = asyncio.Event()  # before any of its events can arrive
        try:
            answer = self.pbx.originate_via_operator(
                operator=c.operator, phone=c.phone, key=c.key, channel_id=chan, context=self.opts.context,
                caller_id=self.opts.caller_id, ring_timeout=float(self.domain.policy.missed_calls.operator_ring_s))
        except Exception as exc:  # noqa: BLE001 - handled in the call's task
            answer = exc
        self.stats.placed += 1
        self._operators[c.attempt_id] = c.operator
        self._track(c.attempt_id, self._follow(c, chan, answer), f"missed callback {c.key}")

    def _track(self, attempt_id: int, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks[attempt_id] = task

        def done(t: asyncio.Task, aid=attempt_id) -> None:
            self._tasks.pop(aid, None)
            self._operators.pop(aid, None)
            if not t.cancelled() and t.exception() is not None:
                log.error("missed callback %s failed in the runner", aid, exc_info=t.exception())
        task.add_done_callback(done)

    async def _follow(self, c: M.Claimed, chan: str, answer: Any) -> None:
        outcome = "unknown"
        try:
            try:
                if isinstance(answer, BaseException):
                    raise answer
                reply = await answer
            except NotSent:
                await self._tx(lambda s: M.unclaim(s, c.attempt_id, "not sent: no link to Asterisk"))
                outcome = "not_sent"
                return
            except OutcomeUnknown:
                log.warning("missed callback %s: Originate outcome unknown; will reconcile", c.key)
                return  # left `dialing`: reconcile asks Asterisk, never dial blindly again
            if reply.outcome != ANSWERED:
                # the operator's phone was not answered: the citizen was never dialled
                self._resting[c.operator] = time.monotonic() + self.opts.operator_rest
                await self._tx(lambda s: M.unclaim(s, c.attempt_id, f"operator {c.operator} did not answer"))
                outcome = "operator_missed"
                return
            await self._tx(lambda s: M.mark_answered(s, self.domain, c.attempt_id))
            outcome = await self._settle_at_end(c.attempt_id, chan)
        finally:
            self._hangups.pop(chan, None)
            self._ends.pop(chan, None)
            self.stats.count(self.stats.outcomes, outcome)
            if self.on_result is not None:
                with contextlib.suppress(Exception):
                    self.on_result(c.key, outcome)

    async def _settle_at_end(self, attempt_id: int, chan: str) -> str:
        """Wait for the call to end; reached = the citizen's leg answered. Without its end event
        (it ended while no runner listened) Asterisk's ledger says whether the citizen was dialled."""
        status = await self._wait_end(chan)
        if status is None:
            found = await fate(self.pbx, chan, set())
            if found == NEVER and await self._tx(lambda s: M.unclaim(s, attempt_id,
                                                                      "the operator's phone was not answered")):
                return "operator_missed"
            if found is None:
                return "unknown"  # Asterisk not reachable: the next reconcile settles it
            status = "unknown"
        reached = status == M.CITIZEN_ANSWERED
        await self._tx(lambda s: M.finish(s, self.domain, attempt_id, reached=reached,
                                          detail=f"citizen's dial status {status}"))
        await self._forget_ledger(chan)
        return M.REACHED if reached else M.NOT_REACHED

    async def _wait_end(self, chan: str) -> str | None:
        hung = self._hangups.setdefault(chan, asyncio.Event())
        while not hung.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hung.wait(), self.opts.check_seconds)
            if hung.is_set() or not self.pbx.connected:
                continue
            with contextlib.suppress(PbxError):
                if chan not in await self.pbx.channels_up(timeout=5):
                    break  # its hang-up was missed (link down meanwhile)
        deadline = time.monotonic() + self.opts.end_grace
        while chan not in self._ends and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the end event is sent before the hang-up; a lagging one is waited for
        return self._ends.get(chan)

    async def _forget_ledger(self, chan: str) -> None:
        with contextlib.suppress(PbxError, OSError):
            await self.pbx.ledger_forget(chan, timeout=5)

    # ---- after a crash -------------------------------------------------------------------------
    async def reconcile(self) -> dict[str, int]:
        """Settle the attempts in flight that no task of this process drives (a dead process's)."""
        if time.monotonic() - self._started_at < self.opts.settle_seconds:
            return {}  # an Originate written just before the crash may still be starting in Asterisk
        orphans = await self._tx(lambda s: M.orphans(s, set(self._tasks)))
        if not orphans or not self.pbx.connected:
            return {}
        try:
            alive = await self.pbx.channels_up(timeout=10)
        except PbxError:
            return {}
        done: dict[str, int] = {}
        for attempt_id, key, state in orphans:
            chan = self._channel_id(key)
            found = await fate(self.pbx, chan, alive)
            if found == UP:
                self._hangups.setdefault(chan, asyncio.Event())
                self._track(attempt_id, self._watch_adopted(attempt_id, chan), f"missed callback {key} (adopted)")
            elif found == DIALLED:
                await self._tx(lambda s, aid=attempt_id: M.finish(
                    s, self.domain, aid, reached=False, detail="interrupted: dialled, outcome unknown"))
                await self._forget_ledger(chan)
            elif found == NEVER:
                await self._tx(lambda s, aid=attempt_id: M.unclaim(s, aid, "interrupted before the citizen was dialled")
                               if state == M.DIALING else M.finish(s, self.domain, aid, reached=False,
                                                                   detail="interrupted"))
            if found is not None:
                self.stats.count(done, found)
                self.stats.count(self.stats.reconciled, found)
        if done:
            log.info("missed-call callbacks reconciled: %s", done)
        return done

    async def _watch_adopted(self, attempt_id: int, chan: str) -> None:
        try:
            outcome = await self._settle_at_end(attempt_id, chan)
            self.stats.count(self.stats.outcomes, outcome)
        finally:
            self._hangups.pop(chan, None)
            self._ends.pop(chan, None)

    # ---- run until nothing is due (tests, a CLI) -------------------------------------------------
    async def drain(self, *, timeout: float, poll: float = 0.5) -> MissedStats:
        deadline = time.monotonic() + timeout
        while True:
            await self.sweep()
            if not self._tasks:
                due = await self._tx(lambda s: M.due(s, self.domain))
                if not due:
                    return self.stats
            if time.monotonic() > deadline:
                raise TimeoutError("missed-call callbacks still running at the deadline")
            await asyncio.sleep(poll)


__all__ = ["MissedCallbackRunner", "MissedOptions", "MissedStats"]
