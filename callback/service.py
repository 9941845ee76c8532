"""The callback and deadline scheduler service (issue 5 item 1).

Runs inside any long-lived asyncio process (`callcenter callbacks run`, or the web server's
lifespan: `await service.start()` / `await service.stop()`). The composition root builds it with
the PBX port and the recording clean-up (callcenter/callbacks.py `callback_service`). Every process
competes for leadership (callback/leader.py); only the leader runs APScheduler (persistent
SQLAlchemy job store in the project's database) with two jobs:

- `callback-sweep` every `sweep_seconds`: plan, reconcile and place callbacks (callback/runner.py);
- `deadline-sweep` every `deadline_seconds`: urges and alerts (callback/deadlines.py);
- `missed-call-sweep` every `sweep_seconds` (given a port for it): 漏接回拨 (callback/missed_runner.py).

Standbys poll every `poll_seconds` and take over when the leader's lock is released (PostgreSQL:
at once when its connection dies; SQLite: when its lease expires).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from callback.deadlines import sweep_deadlines
from callback.leader import Leadership, is_paused, leadership_for
from callback.missed_runner import MissedCallbackRunner, MissedOptions
from callback.notify_runner import NoticeOptions, NoticeRunner
from callback.notify_sms import SmsNotices, SmsSender
from callback.pbx import CallbackPbx, MissedCallPbx, NoticePbx
from callback.runner import CallbackRunner, RunnerOptions
from ticketing.domain import Domain
from ticketing.store import make_session_factory, session_scope

log = logging.getLogger("callback.service")

JOB_TABLE = "callcenter_scheduler_jobs"
# The persistent job store keeps jobs by function name, not by object: the job functions below
# find the running service(s) of this process here.
_SERVICES: set[CallbackService] = set()


async def callback_tick() -> None:
    """APScheduler job: one callback sweep (referenced by name in the persistent job store)."""
    for service in list(_SERVICES):
        if service.is_leader:
            await service.runner.sweep()


async def deadline_tick() -> None:
    """APScheduler job: one deadline sweep (referenced by name in the persistent job store)."""
    for service in list(_SERVICES):
        if service.is_leader:
            await service.run_deadline_sweep()


async def missed_tick() -> None:
    """APScheduler job: one missed-call callback sweep (referenced by name in the persistent job store)."""
    for service in list(_SERVICES):
        if service.is_leader and service.missed is not None:
            await service.missed.sweep()


async def notice_tick() -> None:
    """APScheduler job: one voice-notice sweep (issue 14 item 5; referenced by name in the job store),
    and one of the citizens' notices by SMS where a sender is wired."""
    for service in list(_SERVICES):
        if service.is_leader and service.notices is not None:
            await service.notices.sweep()
        if service.is_leader and service.sms is not None:
            await service.sms.sweep()


async def retention_tick() -> None:
    """APScheduler job: delete call recordings past their retention (policy.recordings)."""
    for service in list(_SERVICES):
        if service.is_leader:
            await service.run_retention()


# Deletes recordings past retention: (session, now, retention_days) -> files deleted; the caller commits.
PurgeRecordings = Callable[[Session, datetime, int], int]


class CallbackService:
    """`owns_pbx`: the service starts the port's link with itself and stops it after the runner.
    `purge_recordings`: the daily recording clean-up (none: the job runs and deletes nothing)."""

    def __init__(self, domain: Domain, engine: Engine, pbx: CallbackPbx, *, owns_pbx: bool = False,
                 purge_recordings: PurgeRecordings | None = None, options: RunnerOptions | None = None,
                 sweep_seconds: float = 30.0, deadline_seconds: float = 300.0, poll_seconds: float = 5.0,
                 lease_seconds: float = 20.0, holder: str | None = None,
                 on_leadership: Callable[[bool], None] | None = None, missed_pbx: MissedCallPbx | None = None,
                 owns_missed_pbx: bool = False, notice_pbx: NoticePbx | None = None,
                 sms_sender: SmsSender | None = None):
        self.domain = domain
        self.engine = engine
        self.sessions = make_session_factory(self.engine)
        self._own_pbx = owns_pbx
        self.pbx = pbx
        self.purge_recordings = purge_recordings
        self.runner = CallbackRunner(self.domain, self.sessions, self.pbx, options, paused=self._paused)
        opts = self.runner.opts
        self.missed_pbx, self._own_missed_pbx = missed_pbx, owns_missed_pbx
        self.missed = None if missed_pbx is None else MissedCallbackRunner(
            self.domain, self.sessions, missed_pbx,
            MissedOptions(context=opts.context, caller_id=opts.caller_id, channel_prefix=opts.channel_prefix))
        # voice notices share the survey's link (the same Originate and ledger; callcenter.callbacks)
        self.notices = None if notice_pbx is None else NoticeRunner(
            self.domain, self.sessions, notice_pbx,
            NoticeOptions(context=opts.context, caller_id=opts.caller_id, channel_prefix=opts.channel_prefix))
        self.sms = None if sms_sender is None else SmsNotices(self.domain, self.sessions, sms_sender)
        self.sweep_seconds = sweep_seconds
        self.deadline_seconds = deadline_seconds
        self.poll_seconds = poll_seconds
        self.leadership: Leadership = leadership_for(self.engine, holder, lease_seconds=lease_seconds)
        self.on_leadership = on_leadership
        self.is_leader = False
        self.scheduler = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    @property
    def holder(self) -> str:
        return self.leadership.holder

    def _paused(self) -> bool:
        try:
            return is_paused(self.engine)
        except Exception:  # noqa: BLE001 - an unreadable flag must not stop the runner's bookkeeping
            log.exception("cannot read the pause flag; treating callbacks as paused")
            return True

    async def run_deadline_sweep(self):
        def run():
            with session_scope(self.sessions) as s:
                return sweep_deadlines(s, self.domain)
        return await asyncio.to_thread(run)

    async def run_retention(self) -> int:
        purge = self.purge_recordings
        if purge is None:
            return 0

        def run():
            with session_scope(self.sessions) as s:
                return purge(s, self.domain.clock(), self.domain.policy.recordings.retention_days)
        deleted = await asyncio.to_thread(run)
        if deleted:
            log.info("recordings past %d days deleted: %d", self.domain.policy.recordings.retention_days, deleted)
        return deleted

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        _SERVICES.add(self)
        if self._own_pbx:
            await self.pbx.start()  # keeps trying in the background; Asterisk may start later
        if self._own_missed_pbx:
            await self.missed_pbx.start()
        self.runner.attach()
        if self.missed is not None:
            self.missed.attach()
        if self.notices is not None:
            self.notices.attach()
        self._task = asyncio.create_task(self._leader_loop(), name="callback leadership")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._step_down()
        await self.runner.stop(wait=False)
        if self.missed is not None:
            await self.missed.stop()  # its calls go on in Asterisk; the next leader adopts them
        if self.notices is not None:
            await self.notices.stop()
        if self._own_pbx:
            await self.pbx.stop()
        if self._own_missed_pbx:
            await self.missed_pbx.stop()
        await asyncio.to_thread(self.leadership.release)
        _SERVICES.discard(self)

    async def _leader_loop(self) -> None:
        while not self._stopping:
            try:
                if not self.is_leader:
                    if await asyncio.to_thread(self.leadership.try_acquire):
                        await self._become_leader()
                elif not await asyncio.to_thread(self.leadership.still_held):
                    await self._step_down()
            except Exception:  # noqa: BLE001 - the database may be briefly away; keep trying
                log.exception("scheduler leadership check failed")
                if self.is_leader:
                    await self._step_down()
            await asyncio.sleep(self.poll_seconds)

    async def _become_leader(self) -> None:
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        log.info("scheduler %s is now the active one", self.holder)
        self.is_leader = True
        self.runner._stopping = False
        if self.missed is not None:
            self.missed.resume()
        if self.notices is not None:
            self.notices.resume()
        scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename=JOB_TABLE)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 120},
        )
        now = datetime.now().astimezone()
        scheduler.add_job("callback.service:callback_tick", "interval", seconds=self.sweep_seconds,
                          id="callback-sweep", name="callback survey sweep (R7.4)", replace_existing=True,
                          next_run_time=now)
        scheduler.add_job("callback.service:deadline_tick", "interval", seconds=self.deadline_seconds,
                          id="deadline-sweep", name="deadline keeping (R7.7, R8.2, R8.3)", replace_existing=True,
                          next_run_time=now)
        if self.missed is not None:
            scheduler.add_job("callback.service:missed_tick", "interval", seconds=self.sweep_seconds,
                              id="missed-call-sweep", name="missed-call callbacks (漏接回拨)", replace_existing=True,
                              next_run_time=now)
        if self.notices is not None or self.sms is not None:
            scheduler.add_job("callback.service:notice_tick", "interval", seconds=self.sweep_seconds,
                              id="notice-sweep", name="voice notices (R7.7 urges)", replace_existing=True,
                              next_run_time=now)
        scheduler.add_job("callback.service:retention_tick", "interval", hours=24, id="recording-retention",
                          name="recording retention clean-up", replace_existing=True, next_run_time=now)
        scheduler.start()
        self.scheduler = scheduler
        if self.on_leadership is not None:
            self.on_leadership(True)

    async def _step_down(self) -> None:
        if not self.is_leader:
            return
        log.warning("scheduler %s steps down", self.holder)
        self.is_leader = False
        if self.missed is not None:
            self.missed.halt()
        if self.notices is not None:
            self.notices.halt()
        self.runner.halt()  # no new calls, spare claims put back; calls already placed finish in Asterisk
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                self.scheduler.shutdown(wait=False)
            self.scheduler = None
        if self.on_leadership is not None:
            self.on_leadership(False)


async def run_forever(service: CallbackService) -> None:
    await service.start()
    try:
        await asyncio.Event().wait()
    finally:
        await service.stop()


__all__ = ["CallbackService", "callback_tick", "deadline_tick", "missed_tick", "notice_tick", "run_forever", "JOB_TABLE"]
