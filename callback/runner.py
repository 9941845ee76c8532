"""Places 回访 calls through Asterisk (R7.4): at most N at once, within calling hours, restart-safe.

One `sweep()` plans attempts for newly reported cases (a page of them; the writer plans the rest
of a large backlog a page after each of its passes, so calls start at once), settles attempts
left in flight by a dead process, and claims due attempts up to the concurrency cap. Each claimed attempt is committed as
`dialing` BEFORE its Originate (ChannelId = the attempt's ledger id; sent through the PBX port,
callback/pbx.py), then:

- not answered -> busy / no answer / failed by its Reason: retry with backoff or the
  manual list (callback/attempts.py);
- answered -> the survey runs over FastAGI (`ivr/survey`, agi/hotline.py),
  which stores the rating; the runner holds the concurrency slot until the channel hangs up and
  marks the attempt failed if the survey never finished.

The port never re-sends an Originate. When an Originate's fate is unknown (link lost before
the answer) the attempt stays `dialing` and `reconcile` asks Asterisk: a channel with that
Uniqueid still up -> wait for it; the ledger entry written by `[outbound-callback]` before
dialling present -> it was dialled (outcome unknown: counted as a failed attempt); absent -> it
never ran and goes back to `scheduled` with the same key. No key is ever dialled twice.

The store work is batched so that the cap and Asterisk, not the store, set the rate: one writer
task runs one transaction per pass with every result queued since the last pass (calls that
ended close together), every attempt to put back, and the claims for the free slots. The
Originates of the claimed attempts go out only after that transaction committed. While calls
end quickly the writer claims spare attempts ahead (as many as ended in the last `spare_horizon`,
at most 8 x cap; "ready", committed as
`dialing`); a freed slot takes one at once instead of waiting for the next pass. A ready
attempt not dialled within `ready_seconds` is put back, as are all of them when the runner
stops or steps down. A crash before a result's pass leaves the attempt `dialing` with its
ledger entry: reconcile counts it as dialled (outcome unknown), never dials it again.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from callback import attempts as A
from callback.pbx import ANSWERED, REFUSED, CallbackPbx, NotSent, OutcomeUnknown, PbxError
from ticketing.dialing import dial_result
from ticketing.domain import Domain
from ticketing.privacy import mask_phone
from ticketing.store import session_scope

log = logging.getLogger("callback.runner")

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
    write_window: float = 0.002         # a result waits this long for others to share its transaction
    ready_seconds: float = 0.5          # a spare claimed attempt not dialled within this is put back
    spare_horizon: float = 0.1          # spares: as many calls as ended in this many seconds,
    spare_per_line: int = 8             # at most this many per line of the cap (cap 4 at ~650 busy calls/s:
    #                                     a pass waiting 20-30 ms for CPU used up 4 x cap and left the lines idle)
    pause_check_seconds: float = 0.5    # the pause flag is read at most this often


@dataclass
class CallResult:
    key: str
    outcome: str            # answered, busy, no_answer, failed, not_sent, unknown
    reason: int | None = None
    seconds: float = 0.0    # the whole attempt, bookkeeping included
    dial_seconds: float = 0.0  # Originate sent -> OriginateResponse
    line_seconds: float = 0.0  # Originate sent -> the line is free again (what the cap holds)


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
    def __init__(self, domain: Domain, sessions: sessionmaker[Session], pbx: CallbackPbx,
                 options: RunnerOptions | None = None, *, paused: Callable[[], bool] | None = None,
                 on_result: Callable[[CallResult], Any] | None = None):
        self.domain = domain
        self.sessions = sessions
        self.pbx = pbx
        self.opts = options or RunnerOptions()
        self.paused = paused or (lambda: False)
        self.on_result = on_result
        self.stats = RunStats()
        self.budget: int | None = None          # stop claiming after this many calls (run-now --limit)
        self._tasks: dict[int, asyncio.Task] = {}  # attempt id -> its call (and its bookkeeping)
        self._calling: set[int] = set()  # attempts whose call is up in Asterisk: what the cap counts
        self._adopted: dict[int, asyncio.Task] = {}  # in-flight attempts of a dead process, watched
        self._ready: deque[tuple[A.Claimed, float]] = deque()  # claimed (committed), not dialled yet
        self._releasing: set[int] = set()  # ready attempts being put back (still ours until committed)
        self._results: list[tuple[A.Unsuccessful, asyncio.Future]] = []  # waiting for the writer
        self._unclaims: list[tuple[int, asyncio.Future | None]] = []
        self._ended: deque[float] = deque()  # when recent calls ended: how many spares are worth it
        self._others = 0  # calls in flight in other processes, as of the last pass
        self._hangups: dict[str, asyncio.Event] = {}
        self._sub = None
        self._started_at = time.monotonic()
        self._sweep_lock = asyncio.Lock()
        self._resweep = False
        self._stopping = False
        self._changed = asyncio.Event()
        self._last_plan = -1e9
        self._wake = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self._plan_more = False  # the writer plans the rest of a large backlog, a page after each pass
        self._passes = 0  # writer passes done (sweep waits for the one after its request)
        self._pass_done = asyncio.Event()
        self._pass_running = False
        self._orphan_request: asyncio.Future | None = None
        self._paused_at = -1e9
        self._paused_now = False
        self.transactions = 0  # writer transactions
        self.result_transactions = 0  # of those, the ones that wrote results (how well results batch)
        self.writer_seconds = 0.0  # time spent in writer passes (a writer busy all the time sets the rate)
        self._dry = False  # the last pass found fewer due attempts than it asked for

    # ---- lifecycle -------------------------------------------------------------------------
    def attach(self) -> None:
        """Subscribe to the hang-ups the runner needs (call once, after the port exists)."""
        if self._sub is None:
            self._sub = self.pbx.on_hangup(self._on_hangup)

    async def stop(self, *, wait: bool = True) -> None:
        """Stop claiming. Calls already placed go on in Asterisk; with wait, their outcomes are recorded."""
        self.halt()
        tasks = list(self._tasks.values()) + list(self._adopted.values())
        if wait and tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush()  # results queued so far and the spare claims put back
        if not wait:
            for t in tasks:
                t.cancel()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
            self._writer = None
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def halt(self) -> None:
        """No new calls (stepping down, lease lost): spare claimed attempts are put back, never dialled."""
        self._stopping = True
        self._drop_ready()

    def _drop_ready(self) -> None:
        while self._ready:
            c, _t = self._ready.popleft()
            self._release(c)
        self._kick()

    def _release(self, c: A.Claimed) -> None:
        self._releasing.add(c.attempt_id)
        self._unclaims.append((c.attempt_id, None))
        if self.budget is not None:
            self.budget += 1
        self.stats.claimed -= 1

    @property
    def in_flight(self) -> int:
        """Calls up in Asterisk now (what the concurrency cap limits)."""
        return len(self._calling) + len(self._adopted)

    def _mine(self) -> set[int]:
        """Attempts this process drives: reconcile and claims leave them alone."""
        return set(self._tasks) | set(self._adopted) | {c.attempt_id for c, _t in self._ready} | self._releasing

    def _on_hangup(self, channel_id: str) -> None:
        ev = self._hangups.get(channel_id)
        if ev is not None:
            ev.set()

    async def _tx(self, fn: Callable[[Session], Any]) -> Any:
        def run():
            with session_scope(self.sessions) as s:
                return fn(s)
        return await asyncio.to_thread(run)

    # ---- the sweep -------------------------------------------------------------------------
    async def sweep(self) -> int:
        """Plan, reconcile, and start calls up to the cap. Returns how many calls it claimed."""
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
            if not self._plan_more:
                # one short transaction per page: the first now, so that calls start at once, the
                # rest of a large backlog by the writer between its passes while they run
                self._plan_more = await self._plan_page() >= self.opts.plan_batch
            await self.reconcile()
        before = self.stats.claimed
        await self._flush()
        return self.stats.claimed - before

    async def _plan_page(self) -> int:
        made = await self._tx(lambda s: A.plan_due(s, self.domain, batch=self.opts.plan_batch, pages=1))
        self.stats.planned += made
        return made

    async def _plan_next_page(self) -> None:
        """The writer plans the rest of a large backlog one page after each pass: the runner's
        write transactions stay one at a time (on SQLite a second writer thread would wait for
        the lock in SQLite's busy handler and hold the claims up)."""
        try:
            made = await self._plan_page()
        except Exception:  # noqa: BLE001 - the next planning sweep goes on from where this stopped
            log.exception("callback planning failed")
            made = 0
        if made < self.opts.plan_batch or self._stopping:
            self._plan_more = False
        self._wake.set()  # the next pass claims what was just planned
        self._changed.set()

    # ---- the writer: one transaction per pass ------------------------------------------------
    def _kick(self) -> None:
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="callback writer")

    async def _flush(self) -> None:
        """Wait for a whole writer pass that starts after this call (its claims are in `_ready`)."""
        target = self._passes + (2 if self._pass_running else 1)
        self._kick()
        while self._passes < target:
            self._pass_done.clear()
            if self._writer is None or self._writer.done():
                self._kick()
            await self._pass_done.wait()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            if self.opts.write_window > 0 and self._results:
                await asyncio.sleep(self.opts.write_window)  # let results of calls ending now join
            self._wake.clear()
            self._pass_running = True
            t0 = time.perf_counter()
            try:
                await self._write_pass()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database may be briefly away; the next pass retries
                log.exception("callback writer pass failed")
                await asyncio.sleep(0.5)
                self._wake.set()  # claims and put-backs are tried again
            finally:
                self.writer_seconds += time.perf_counter() - t0
                self._pass_running = False
                self._passes += 1
                self._pass_done.set()
            if self._plan_more:
                t0 = time.perf_counter()
                await self._plan_next_page()
                self.writer_seconds += time.perf_counter() - t0

    def _wanted(self) -> int:
        """Attempts to claim in this pass (before subtracting other processes' calls): the free
        lines, plus spares while calls end quickly."""
        if self._stopping or self.budget == 0:
            return 0
        cap = self.domain.policy.callback.concurrency
        now = time.monotonic()
        while self._ended and now - self._ended[0] > self.opts.spare_horizon:
            self._ended.popleft()
        # the calls likely to end while the next pass runs; none while calls last long
        spare = min(self.opts.spare_per_line * cap, len(self._ended)) if self.opts.ready_seconds > 0 else 0
        want = cap + spare - len(self._calling) - len(self._adopted) - len(self._ready)
        if self.budget is not None:
            want = min(want, self.budget)
        return max(want, 0)

    async def _write_pass(self) -> None:
        results, self._results = self._results, []
        unclaims, self._unclaims = self._unclaims, []
        check_pause = time.monotonic() - self._paused_at >= self.opts.pause_check_seconds
        orphan_request, self._orphan_request = self._orphan_request, None
        wanted = self._wanted()
        mine = self._mine()

        def tx(s: Session):
            paused = self.paused() if check_pause else self._paused_now
            outs = A.record_unsuccessful_many(s, self.domain, [r for r, _f in results])
            back = A.unclaim_many(s, [aid for aid, _f in unclaims])
            orphans = A.orphans(s, mine) if orphan_request is not None else []
            others = A.in_flight_count(s, exclude=mine)
            n = 0 if paused else wanted - others  # a line of another process is not ours to fill
            claimed = A.claim(s, self.domain, n, exclude=mine) if n > 0 else []
            return paused, outs, set(back), orphans, others, claimed
        try:
            paused, outs, back, orphans, others, claimed = await self._tx(tx)
        except BaseException as exc:
            if orphan_request is not None and not orphan_request.done():
                orphan_request.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            for _r, fut in results:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            for aid, fut in unclaims:
                self._releasing.discard(aid)
                if fut is not None and not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            raise
        self.transactions += 1
        if results:
            self.result_transactions += 1
        self._dry = len(claimed) < max(wanted - others, 0)
        if orphan_request is not None and not orphan_request.done():
            orphan_request.set_result(orphans)
        if check_pause:
            self._paused_at, self._paused_now = time.monotonic(), paused
        for (_r, fut), out in zip(results, outs):
            if not fut.done():
                fut.set_result(out)
        for aid, fut in unclaims:
            self._releasing.discard(aid)
            if fut is not None and not fut.done():
                fut.set_result(aid in back)
        self._others = others
        now = time.monotonic()
        for c in claimed:
            if self.budget is not None:
                self.budget -= 1
            self.stats.claimed += 1
            self._ready.append((c, now))
        if self._stopping or paused:
            self._drop_ready()
        self._launch()
        if not self._tasks and not self._adopted and not self._ready:
            self._changed.set()

    def _launch(self) -> None:
        """Dial ready attempts into the free lines (no store round trip: they are committed)."""
        if self._stopping or self._paused_now:
            if self._ready:
                self._drop_ready()
            return
        free = self.domain.policy.callback.concurrency - len(self._calling) - len(self._adopted) - self._others
        now = time.monotonic()
        stale = False
        while self._ready and free > 0:
            c, t = self._ready.popleft()
            if now - t > self.opts.ready_seconds:
                self._release(c)  # claimed too long ago to dial now: back to scheduled, same key
                stale = True
                continue
            free -= 1
            self._calling.add(c.attempt_id)
            dialled = self._dial(c)
            task = asyncio.create_task(self._place(c, dialled), name=f"callback {c.key}")
            self._tasks[c.attempt_id] = task
            task.add_done_callback(lambda t, aid=c.attempt_id, d=dialled: self._done(aid, t, d[2]))
        if stale or (not self._dry and self._wanted() > 0):
            self._kick()

    async def _record(self, result: A.Unsuccessful) -> str | None:
        """Queue one call's result for the writer's next pass and wait until it is committed."""
        fut = asyncio.get_running_loop().create_future()
        self._results.append((result, fut))
        self._kick()
        return await fut

    async def _orphans(self) -> list[tuple[int, str, str]]:
        """Attempts in flight that no task of this process drives, read by the writer in a pass:
        an attempt the writer has just claimed is then never mistaken for a dead process's."""
        if self._orphan_request is None or self._orphan_request.done():
            self._orphan_request = asyncio.get_running_loop().create_future()
        fut = self._orphan_request
        self._kick()
        return await fut

    async def _unclaim(self, attempt_id: int) -> bool:
        fut = asyncio.get_running_loop().create_future()
        self._unclaims.append((attempt_id, fut))
        self._kick()
        return await fut

    def _done(self, attempt_id: int, task: asyncio.Task, answer: Any = None) -> None:
        close = getattr(answer, "close", None)  # (an exception raised before sending has none)
        if close is not None:
            close()  # no-op unless the task was cancelled before it awaited the answer
        self._tasks.pop(attempt_id, None)
        self._call_ended(attempt_id)
        self._adopted.pop(attempt_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("callback attempt %s failed in the runner", attempt_id, exc_info=task.exception())
        if not self._tasks and not self._adopted:
            self._changed.set()
        if not self._stopping:
            self._launch()

    def _call_ended(self, attempt_id: int) -> None:
        if attempt_id in self._calling:
            self._calling.discard(attempt_id)
            self._ended.append(time.monotonic())
            if not self._stopping:
                self._launch()  # a line is free: fill it now rather than at the next tick

    # ---- one call --------------------------------------------------------------------------
    def _channel_id(self, key: str) -> str:
        return f"{self.opts.channel_prefix}{key}"

    def _dial(self, c: A.Claimed) -> tuple[float, Any, Any]:
        """Write the Originate now, while the line is free, not when the call's task first runs.
        Returns (when, clock time, the answer to await or the exception raised before writing)."""
        chan = self._channel_id(c.key)
        self._hangups.setdefault(chan, asyncio.Event())  # before any of its events can arrive
        t0, sent_at = time.monotonic(), self.domain.clock()
        try:
            answer = self.pbx.originate(
                phone=c.phone, key=c.key, case_number=c.case_number, channel_id=chan, context=self.opts.context,
                caller_id=self.opts.caller_id, dial_timeout=self.opts.dial_timeout,
            )
        except Exception as exc:  # noqa: BLE001 - raised in the call's task, where it is handled
            answer = exc
        return t0, sent_at, answer

    async def _place(self, c: A.Claimed, dialled: tuple[float, Any, Any]) -> CallResult:
        chan = self._channel_id(c.key)
        t0, sent_at, answer = dialled
        hung = self._hangups.setdefault(chan, asyncio.Event())
        result = CallResult(c.key, "unknown")
        settled = False  # the store holds the final outcome: Asterisk's ledger entry may go
        try:
            try:
                if isinstance(answer, BaseException):
                    raise answer
                reply = await answer
            except NotSent:
                # certainly not written: the same key may go again
                self._call_ended(c.attempt_id)
                await self._unclaim(c.attempt_id)
                result.outcome = "not_sent"
                return result
            except OutcomeUnknown as exc:
                # may have run: leave it `dialing`; reconcile asks Asterisk (never dial blindly again)
                log.warning("callback %s: Originate outcome unknown (%s); will reconcile", c.key,
                            type(exc.__cause__ or exc).__name__)
                result.outcome = "unknown"
                return result
            result.dial_seconds = result.line_seconds = time.monotonic() - t0
            if reply.outcome != ANSWERED:
                self._call_ended(c.attempt_id)  # no call up any more: the line is free
            if reply.outcome == REFUSED:  # nothing was dialled
                detail = f"originate refused: {reply.message}"
                await self._record(A.Unsuccessful(c.attempt_id, A.FAILED, detail, log_call=True, channel_id=chan,
                                                  started_at=sent_at))
                result.outcome = A.FAILED
                settled = True
                return result
            if reply.outcome == ANSWERED:
                result.outcome = "answered"
                await self._tx(lambda s: A.mark_answered(s, self.domain, c.attempt_id))
                await self._await_end(chan, hung)
                self._call_ended(c.attempt_id)
                result.line_seconds = time.monotonic() - t0
                await asyncio.sleep(self.opts.finish_grace)
                # usually a no-op: the survey's AGI handler has stored the rating meanwhile
                await self._record(A.Unsuccessful(c.attempt_id, A.FAILED, "answered, but the survey did not finish"))
                settled = True
                return result
            reason = reply.reason
            outcome = A.STATE_AFTER_DIAL.get(dial_result(reason), A.FAILED)
            result.outcome, result.reason = outcome, reason
            await self._record(A.Unsuccessful(c.attempt_id, outcome, f"originate reason {reason}", (A.DIALING,),
                                              log_call=True, channel_id=chan, started_at=sent_at))
            settled = True
            if log.isEnabledFor(logging.DEBUG):  # per call: debug (attempts.py logs one line per batch)
                log.debug("callback %s to %s: %s", c.key, mask_phone(c.phone), outcome)
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
            with contextlib.suppress(PbxError):
                await self.pbx.hangup(chan)

    async def _forget_ledger(self, chan: str) -> None:
        # the attempt is settled in our store: Asterisk's entry is not needed any more
        with contextlib.suppress(PbxError, OSError):
            await self.pbx.ledger_forget(chan, timeout=5)

    # ---- after a crash ---------------------------------------------------------------------
    async def reconcile(self) -> dict[str, int]:
        """Settle attempts in flight that no task of this process drives (a dead process's)."""
        if time.monotonic() - self._started_at < self.opts.settle_seconds:
            return {}  # an Originate written just before the crash may still be starting in Asterisk
        orphans = await self._orphans()
        if not orphans or not self.pbx.connected:
            return {}
        try:
            alive = await self.pbx.channels_up(timeout=10)
        except PbxError:
            return {}
        done: dict[str, int] = {}
        for attempt_id, key, state in orphans:
            if attempt_id in self._mine():
                continue  # (defensive) ours after all: never settle an attempt this process drives
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
                dialled = await self.pbx.ledger_has(chan, timeout=5)
            except PbxError:
                continue
            if dialled:
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
                if not self._tasks and not self._adopted and not self._ready and not self._plan_more:
                    if self.budget == 0 or self._stopping or self.paused():
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


__all__ = ["CallbackRunner", "RunnerOptions", "CallResult", "RunStats"]
