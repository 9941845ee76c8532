"""Places 回访 calls through Asterisk (R7.4): at most N at once, within calling hours, restart-safe.

One `sweep()` plans attempts for newly reported cases, settles attempts left in flight by a dead
process, and claims due attempts up to the concurrency cap. Each claimed attempt is committed as
`dialing` BEFORE its Originate (ChannelId = the attempt's ledger id), then:

- OriginateResponse Failure -> busy / no answer / failed by its Reason: retry with backoff or the
  manual list (callback/attempts.py);
- Success (the citizen answered) -> the survey runs over FastAGI (`ivr/survey`, agi/hotline.py),
  which stores the rating; the runner holds the concurrency slot until the channel hangs up and
  marks the attempt failed if the survey never finished.

The AMI client never re-sends an action. When an Originate's fate is unknown (link lost before
the answer) the attempt stays `dialing` and `reconcile` asks Asterisk: a channel with that
Uniqueid still up -> wait for it; the AstDB ledger entry written by `[outbound-callback]` before
dialling present -> it was dialled (outcome unknown: counted as a failed attempt); absent -> it
never ran and goes back to `scheduled` with the same key. No key is ever dialled twice.
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

from callback import attempts as A
from callcenter.ami.client import AMIClient
from callcenter.ami.errors import AMIError, AMILinkLost, AMINotConnected, AMITimeout
from ticketing.domain import Domain
from ticketing.privacy import mask_phone
from ticketing.store import session_scope

log = logging.getLogger("callback.runner")

LEDGER_FAMILY = "callcenter_callback"  # AstDB family written by [outbound-callback]
# The runner needs only call events (OriginateResponse, Hangup): logging in with this filter spares
# it parsing every dialplan event of a busy PBX. Action replies (DBGet, CoreShowChannels) still come.
AMI_EVENTS = "call,system"  # system: FullyBooted after login


@dataclass
class RunnerOptions:
    context: str = "outbound-callback"
    caller_id: str = '"12345" <12345>'
    dial_timeout: float = 40.0          # ringing longer than this = no answer
    survey_timeout: float = 300.0       # an answered call longer than this is hung up
    finish_grace: float = 2.0           # after hangup, time for the AGI handler to store the rating
    settle_seconds: float = 3.0         # after start-up, before attempts of a dead process are settled
    channel_prefix: str = ""            # namespace for channel ids on a shared Asterisk (tests)
    plan_batch: int = 500
    plan_every: float = 5.0             # seconds between planning passes (a slot refill does not plan)


@dataclass
class CallResult:
    key: str
    outcome: str            # answered, busy, no_answer, failed, not_sent, unknown
    reason: int | None = None
    seconds: float = 0.0    # the whole attempt, bookkeeping included
    dial_seconds: float = 0.0  # Originate sent -> OriginateResponse


@dataclass
class RunStats:
    claimed: int = 0
    finished: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reconciled: dict[str, int] = field(default_factory=dict)
    planned: int = 0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class CallbackRunner:
    def __init__(self, domain: Domain, sessions: sessionmaker[Session], ami: AMIClient,
                 options: RunnerOptions | None = None, *, paused: Callable[[], bool] | None = None,
                 on_result: Callable[[CallResult], Any] | None = None):
        self.domain = domain
        self.sessions = sessions
        self.ami = ami
        self.opts = options or RunnerOptions()
        self.paused = paused or (lambda: False)
        self.on_result = on_result
        self.stats = RunStats()
        self.budget: int | None = None          # stop claiming after this many calls (run-now --limit)
        self._tasks: dict[int, asyncio.Task] = {}  # attempt id -> its call (and its bookkeeping)
        self._calling: set[int] = set()  # attempts whose call is up in Asterisk: what the cap counts
        self._adopted: dict[int, asyncio.Task] = {}  # in-flight attempts of a dead process, watched
        self._hangups: dict[str, asyncio.Event] = {}
        self._sub = None
        self._started_at = time.monotonic()
        self._sweep_lock = asyncio.Lock()
        self._resweep = False
        self._stopping = False
        self._changed = asyncio.Event()
        self._last_plan = -1e9

    # ---- lifecycle -------------------------------------------------------------------------
    def attach(self) -> None:
        """Subscribe to the AMI events the runner needs (call once, after the client exists)."""
        if self._sub is None:
            self._sub = self.ami.subscribe(self._on_hangup, ["Hangup"])

    async def stop(self, *, wait: bool = True) -> None:
        """Stop claiming. Calls already placed go on in Asterisk; with wait, their outcomes are recorded."""
        self._stopping = True
        tasks = list(self._tasks.values()) + list(self._adopted.values())
        if wait and tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        else:
            for t in tasks:
                t.cancel()
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    @property
    def in_flight(self) -> int:
        """Calls up in Asterisk now (what the concurrency cap limits)."""
        return len(self._calling) + len(self._adopted)

    def _on_hangup(self, msg) -> None:
        ev = self._hangups.get(msg.get_first("Uniqueid") or "")
        if ev is not None:
            ev.set()

    async def _tx(self, fn: Callable[[Session], Any]) -> Any:
        def run():
            with session_scope(self.sessions) as s:
                return fn(s)
        return await asyncio.to_thread(run)

    # ---- the sweep -------------------------------------------------------------------------
    async def sweep(self) -> int:
        """Plan, reconcile, and start calls up to the cap. Returns how many calls it started."""
        if self._sweep_lock.locked():
            self._resweep = True  # the running sweep goes round once more
            return 0
        started = 0
        async with self._sweep_lock:
            while True:
                self._resweep = False
                started += await self._sweep_once()
                if not self._resweep or self._stopping:
                    return started

    async def _sweep_once(self) -> int:
        if self._stopping:
            return 0
        self.attach()
        if time.monotonic() - self._last_plan >= self.opts.plan_every:
            # Planning and crash recovery scan the backlog: periodically, not on every freed slot,
            # so the scheduler's cost per call does not grow with the backlog.
            self._last_plan = time.monotonic()
            while True:  # one short transaction per page: the bookkeeping of calls is not held up
                made = await self._tx(lambda s: A.plan_due(s, self.domain, batch=self.opts.plan_batch, pages=1))
                self.stats.planned += made
                if made < self.opts.plan_batch:
                    break
            await self.reconcile()
        if self.paused():
            return 0
        cap = self.domain.policy.callback.concurrency
        mine = set(self._tasks) | set(self._adopted)

        def claim(s: Session) -> list[A.Claimed]:
            # calls of this process that are up in Asterisk + calls in flight elsewhere; a call whose
            # result is being written down no longer holds a line
            free = cap - len(self._calling) - len(self._adopted) - A.in_flight_count(s, exclude=mine)
            if self.budget is not None:
                free = min(free, self.budget)
            return A.claim(s, self.domain, free, exclude=mine)
        claimed = await self._tx(claim)
        for c in claimed:
            if self.budget is not None:
                self.budget -= 1
            self.stats.claimed += 1
            self._calling.add(c.attempt_id)
            task = asyncio.create_task(self._place(c), name=f"callback {c.key}")
            self._tasks[c.attempt_id] = task
            task.add_done_callback(lambda t, aid=c.attempt_id: self._done(aid, t))
        return len(claimed)

    def _done(self, attempt_id: int, task: asyncio.Task) -> None:
        self._tasks.pop(attempt_id, None)
        self._call_ended(attempt_id)
        self._adopted.pop(attempt_id, None)
        self._changed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("callback attempt %s failed in the runner", attempt_id, exc_info=task.exception())
        if not self._stopping:
            # a slot is free: fill it now rather than at the next tick
            asyncio.get_running_loop().create_task(self.sweep())

    def _call_ended(self, attempt_id: int) -> None:
        if attempt_id in self._calling:
            self._calling.discard(attempt_id)
            self._changed.set()
            if not self._stopping:
                asyncio.get_running_loop().create_task(self.sweep())

    # ---- one call --------------------------------------------------------------------------
    def _channel_id(self, key: str) -> str:
        return f"{self.opts.channel_prefix}{key}"

    async def _place(self, c: A.Claimed) -> CallResult:
        chan = self._channel_id(c.key)
        hung = self._hangups.setdefault(chan, asyncio.Event())
        t0 = time.monotonic()
        result = CallResult(c.key, "unknown")
        settled = False  # the store holds the final outcome: Asterisk's ledger entry may go
        try:
            try:
                reply = await self.ami.originate(
                    f"Local/{c.phone}@{self.opts.context}", context=self.opts.context, exten="survey", priority=1,
                    caller_id=self.opts.caller_id, channel_id=chan, dial_timeout=self.opts.dial_timeout,
                    variables={"__CALLBACK_KEY": c.key, "__CALLBACK_LEDGER": chan, "CALLBACK_CASE": c.case_number},
                )
            except AMINotConnected:
                # certainly not written: the same key may go again
                await self._tx(lambda s: A.unclaim(s, c.attempt_id))
                result.outcome = "not_sent"
                return result
            except (AMILinkLost, AMITimeout) as exc:
                # may have run: leave it `dialing`; reconcile asks Asterisk (never dial blindly again)
                log.warning("callback %s: Originate outcome unknown (%s); will reconcile", c.key, type(exc).__name__)
                result.outcome = "unknown"
                return result
            result.dial_seconds = time.monotonic() - t0
            if reply.is_response or reply.get_first("Response") != "Success":
                self._call_ended(c.attempt_id)  # no call up any more: the line is free
            if reply.is_response:  # Error: Asterisk refused the action, nothing was dialled
                detail = f"originate refused: {reply.get_first('Message')}"
                await self._tx(lambda s: A.record_unsuccessful(s, self.domain, c.attempt_id, A.FAILED, detail=detail,
                                                                log_call=True, channel_id=chan))
                result.outcome = A.FAILED
                settled = True
                return result
            if reply.get_first("Response") == "Success":
                result.outcome = "answered"
                await self._tx(lambda s: A.mark_answered(s, self.domain, c.attempt_id))
                await self._await_end(chan, hung)
                self._call_ended(c.attempt_id)
                await asyncio.sleep(self.opts.finish_grace)
                await self._tx(lambda s: A.record_unsuccessful(
                    s, self.domain, c.attempt_id, A.FAILED, detail="answered, but the survey did not finish"))
                settled = True
                return result
            reason = int(reply.get_first("Reason") or 0)
            outcome = A.ORIGINATE_REASONS.get(reason, A.FAILED)
            result.outcome, result.reason = outcome, reason
            await self._tx(lambda s: A.record_unsuccessful(s, self.domain, c.attempt_id, outcome,
                                                            detail=f"originate reason {reason}", log_call=True,
                                                            channel_id=chan, from_states=(A.DIALING,)))
            settled = True
            log.info("callback %s to %s: %s", c.key, mask_phone(c.phone), outcome)
            return result
        finally:
            self._hangups.pop(chan, None)
            result.seconds = time.monotonic() - t0
            self.stats.finished += 1
            self.stats.count(result.outcome)
            if settled:
                await self._forget_ledger(chan)
            if self.on_result is not None:
                with contextlib.suppress(Exception):
                    self.on_result(result)

    async def _await_end(self, chan: str, hung: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(hung.wait(), self.opts.survey_timeout)
        except TimeoutError:
            log.warning("callback %s: still up after %.0fs; hanging up", chan, self.opts.survey_timeout)
            with contextlib.suppress(AMIError):
                await self._hangup_by_uniqueid(chan)

    async def _hangup_by_uniqueid(self, chan: str) -> None:
        _resp, items = await self.ami.send_action_list({"Action": "CoreShowChannels"})
        for item in items:
            if item.get_first("Uniqueid") == chan:
                await self.ami.send_action({"Action": "Hangup", "Channel": item.get_first("Channel")})

    async def _forget_ledger(self, chan: str) -> None:
        # the attempt is settled in our store: Asterisk's entry is not needed any more
        with contextlib.suppress(AMIError, OSError):
            await self.ami.send_action({"Action": "DBDel", "Family": LEDGER_FAMILY, "Key": chan}, timeout=5)

    # ---- after a crash ---------------------------------------------------------------------
    async def reconcile(self) -> dict[str, int]:
        """Settle attempts in flight that no task of this process drives (a dead process's)."""
        if time.monotonic() - self._started_at < self.opts.settle_seconds:
            return {}  # an Originate written just before the crash may still be starting in Asterisk
        mine = set(self._tasks) | set(self._adopted)
        orphans = await self._tx(lambda s: A.orphans(s, mine))
        if not orphans or not self.ami.connected:
            return {}
        try:
            _resp, items = await self.ami.send_action_list({"Action": "CoreShowChannels"}, timeout=10)
        except AMIError:
            return {}
        alive = {i.get_first("Uniqueid") for i in items}
        done: dict[str, int] = {}
        for attempt_id, key, state in orphans:
            chan = self._channel_id(key)
            if chan in alive:
                # still talking to the citizen: watch it like our own call
                hung = self._hangups.setdefault(chan, asyncio.Event())
                task = asyncio.create_task(self._watch_adopted(attempt_id, chan, hung))
                self._adopted[attempt_id] = task
                task.add_done_callback(lambda t, aid=attempt_id: self._done(aid, t))
                done["adopted"] = done.get("adopted", 0) + 1
                continue
            try:
                resp, _items = await self.ami.send_action_list(
                    {"Action": "DBGet", "Family": LEDGER_FAMILY, "Key": chan}, timeout=5)
            except AMIError:
                continue
            if resp.success:
                await self._tx(lambda s, aid=attempt_id: A.record_unsuccessful(
                    s, self.domain, aid, A.FAILED, detail="interrupted: dialled, outcome unknown"))
                await self._forget_ledger(chan)
                done["dialled"] = done.get("dialled", 0) + 1
            elif state == A.DIALING:
                await self._tx(lambda s, aid=attempt_id: A.unclaim(s, aid))
                done["never_dialled"] = done.get("never_dialled", 0) + 1
        for k, v in done.items():
            self.stats.reconciled[k] = self.stats.reconciled.get(k, 0) + v
        if done:
            log.info("callback reconcile: %s", done)
        return done

    async def _watch_adopted(self, attempt_id: int, chan: str, hung: asyncio.Event) -> None:
        try:
            await self._await_end(chan, hung)
            await asyncio.sleep(self.opts.finish_grace)
            await self._tx(lambda s: A.record_unsuccessful(
                s, self.domain, attempt_id, A.FAILED, detail="answered, but the survey did not finish"))
            await self._forget_ledger(chan)
        finally:
            self._hangups.pop(chan, None)

    # ---- run until nothing is due ------------------------------------------------------------
    async def drain(self, *, limit: int | None = None, timeout: float | None = None, poll: float = 1.0) -> RunStats:
        """Place every due callback (at most `limit`) and wait for all of them to finish."""
        self.budget = limit
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                self._changed.clear()
                await self.sweep()
                if not self._tasks and not self._adopted:
                    if self.budget == 0 or self.paused():
                        break
                    nothing_due = await self._tx(lambda s: A.due_count(s, self.domain) == 0
                                                 and not A.orphans(s, ()))
                    if nothing_due:
                        break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("callbacks still running at the deadline")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), poll)
        finally:
            self.budget = None
        return self.stats


__all__ = ["CallbackRunner", "RunnerOptions", "CallResult", "RunStats", "LEDGER_FAMILY", "AMI_EVENTS"]
