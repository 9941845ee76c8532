"""The callback runner's store side, batched so that the cap and Asterisk, not the store, set the
rate: one writer task runs one transaction per pass with every result queued since the last pass
(calls that ended close together), every attempt to put back, the orphan read for reconcile, and
the claims for the free lines. The Originates of the claimed attempts go out only after that
transaction committed. While calls end quickly the writer claims spare attempts ahead (as many as
ended in the last `spare_horizon`, at most 8 x cap; "ready", committed as `dialing`) so that a freed
line takes one at once. A crash before a result's pass leaves the attempt `dialing` with its ledger
entry: reconcile counts it as dialled (outcome unknown), never dials it again. Between passes the
writer plans the rest of a large backlog a page at a time. `StoreWriter` is a part of
`CallbackRunner` (callback/runner.py), whose `__init__` holds the state it works on.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from callback import attempts as A
from ticketing.store import session_scope

log = logging.getLogger("callback.runner")


class StoreWriter:
    """The store side of `CallbackRunner`: transactions in a worker thread, planning, the writer."""

    async def _tx(self, fn: Callable[[Session], Any]) -> Any:
        def run():
            with session_scope(self.sessions) as s:
                return fn(s)
        return await asyncio.to_thread(run)

    # ---- planning ----------------------------------------------------------------------------
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
        if self._stopping or self.budget == 0 or not self._lines_known:
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
        carried = self._carried_keys()  # calls up in Asterisk, not ours: each takes a line

        def tx(s: Session):
            paused = self.paused() if check_pause else self._paused_now
            outs = A.record_unsuccessful_many(s, self.domain, [r for r, _f in results])
            back = A.unclaim_many(s, [aid for aid, _f in unclaims])
            orphans = A.orphans(s, mine) if orphan_request is not None else []
            # a carried call counts once, whether or not its attempt is still in flight in the store
            others = A.in_flight_count(s, exclude=mine, exclude_keys=carried) + len(carried)
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

    # ---- what the other parts hand to the writer ---------------------------------------------
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


__all__ = ["StoreWriter"]
