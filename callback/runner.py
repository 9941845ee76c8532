"""Places 回访 calls through Asterisk (R7.4): at most N at once, within calling hours, restart-safe.
`CallbackRunner` is what the service and the CLI drive: one `sweep()` plans attempts for newly
reported cases (a page of them; the writer plans the rest of a large backlog a page after each of
its passes, so calls start at once), settles attempts left in flight by a dead process, and claims
due attempts up to the concurrency cap; `drain()` sweeps until nothing is due; `halt()`/`stop()`
end it. Each claimed attempt is committed as `dialing` BEFORE its Originate. The runner is four
parts: the store side (callback/writer.py, one transaction per pass), the lines
(callback/lines.py, each call from its Originate to its outcome), what a killed process left in
Asterisk (callback/leftovers.py: calls still up count against the cap, settled ledger entries go)
and, here, its lifecycle and the recovery after a crash. The port never re-sends an Originate.
When an Originate's fate is unknown (link lost before the answer) the attempt stays `dialing`
and `reconcile` asks Asterisk (callback/fate.py), once `settle_seconds` have passed since start-up: a channel with
that Uniqueid still up -> wait for it; the ledger entry written by `[outbound-callback]` before
dialling present -> it was dialled (outcome unknown: counted as a failed attempt); absent -> it
never ran and goes back to `scheduled` with the same key. No key is ever dialled twice.
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
from callback.fate import DIALLED, NEVER, UP, fate
from callback.leftovers import Leftovers
from callback.lines import CallResult, LineDriver
from callback.pbx import CallbackPbx, PbxError
from callback.writer import StoreWriter
from ticketing.domain import Domain

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
class RunStats:
    claimed: int = 0
    finished: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reconciled: dict[str, int] = field(default_factory=dict)
    planned: int = 0
    still_up: int = 0        # callback calls Asterisk carried at start that this runner did not place
    ledger_removed: int = 0  # ledger entries of settled attempts swept (left by a killed process)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class CallbackRunner(LineDriver, StoreWriter, Leftovers):
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
        self._carried: set[str] | None = None  # calls up in Asterisk, not ours (callback/leftovers.py)
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
        self._carried = None  # asked again before the next call, should this runner lead again
        self._drop_ready()

    @property
    def in_flight(self) -> int:
        """Calls up in Asterisk now (what the concurrency cap limits)."""
        return len(self._calling) + len(self._adopted)

    def _mine(self) -> set[int]:
        """Attempts this process drives: reconcile and claims leave them alone."""
        return set(self._tasks) | set(self._adopted) | {c.attempt_id for c, _t in self._ready} | self._releasing

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
        if self._carried is None and self.pbx.connected:
            await self._learn_carried()  # before any call: lines still taken count against the cap
        if time.monotonic() - self._last_plan >= self.opts.plan_every:
            # Planning and crash recovery scan the backlog: periodically, not on every freed slot,
            # so the scheduler's cost per call does not grow with the backlog.
            self._last_plan = time.monotonic()
            if not self._plan_more:
                # one short transaction per page: the first now, so that calls start at once, the
                # rest of a large backlog by the writer between its passes while they run
                self._plan_more = await self._plan_page() >= self.opts.plan_batch
            await self.reconcile()
            await self._refresh_carried()
            await self._sweep_ledger()
        before = self.stats.claimed
        await self._flush()
        return self.stats.claimed - before

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
            found = await fate(self.pbx, chan, alive)
            if found == UP:
                # still talking to the citizen: watch it like our own call
                hung = self._hangups.setdefault(chan, asyncio.Event())
                if self._carried:
                    self._carried.discard(chan)  # counted as adopted from now on, not twice
                task = asyncio.create_task(self._watch_adopted(attempt_id, chan, hung))
                self._adopted[attempt_id] = task
                task.add_done_callback(lambda t, aid=attempt_id: self._done(aid, t))
                done["adopted"] = done.get("adopted", 0) + 1
                continue
            if found == DIALLED:
                await self._tx(lambda s, aid=attempt_id: A.record_unsuccessful(
                    s, self.domain, aid, A.FAILED, detail="interrupted: dialled, outcome unknown"))
                await self._forget_ledger(chan)
                done["dialled"] = done.get("dialled", 0) + 1
            elif found == NEVER and state == A.DIALING:
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
                        await self._sweep_ledger()  # entries settled since the last planning pass
                        break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("callbacks still running at the deadline")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), poll)
        finally:
            self.budget = None
        return self.stats


__all__ = ["CallbackRunner", "RunnerOptions", "RunStats"]
