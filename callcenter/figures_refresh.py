"""The background refresh of the daily rollups of the rates (ticketing.figures.rollup) and of the
queue figures (ticketing.figures.queue_rollup), issue 12 item 3:
every `interval_s` the days the database triggers marked stale are computed again, so a report
reads them from the rollup instead of the raw rows. Until then a report is still exact (it reads
stale days raw); this only keeps it fast. Runs beside the API (callcenter/runtime.py build_app);
several processes may run it on one database: the refresh takes the marks it computes in its own
transaction (ticketing.figures.rollup.refresh_stale)."""
from __future__ import annotations

import asyncio
import logging

from callcenter.eventloop import cancel

log = logging.getLogger(__name__)

__all__ = ["RollupRefresher"]


class RollupRefresher:
    """A background service (async start()/stop(), as the app's lifespan runs them)."""

    def __init__(self, domain, engine, interval_s: float = 60.0) -> None:
        from ticketing.figures import Thresholds
        from ticketing.store import make_session_factory
        self.sessions = make_session_factory(engine)
        self.thresholds = Thresholds.for_policy(domain.policy)
        self.interval_s = interval_s
        self._task: asyncio.Task | None = None

    def refresh_once(self) -> int:
        from ticketing.figures import CallFigures
        from ticketing.figures.queue_rollup import refresh_queue_stale
        from ticketing.figures.rollup import refresh_stale, rollup_readers
        from ticketing.store import session_scope
        with session_scope(self.sessions) as s:
            days = refresh_stale(rollup_readers(s, self.thresholds))
        with session_scope(self.sessions) as s:  # the queue's rollup (ticketing.figures.queue_rollup)
            return days + refresh_queue_stale(CallFigures(s, self.thresholds, use_rollup=False))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                days = await asyncio.to_thread(self.refresh_once)
                if days:
                    log.info("figure rollup: %d stale days computed again", days)
            except Exception:  # a busy store or a lost connection: the next round tries again
                log.exception("figure rollup refresh failed")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
