"""Delivers notices by automated voice call (issue 14 item 5; R7.7 urges to a unit, R8.2 notices and
the portal's confirmation to a citizen's line: callback/notices.py): each due try rings one duty phone
(or the citizen's number) through `[outbound-callback]` (the dialplan writes the ledger entry, the same one 回访
and 漏接回拨 use, before it dials the unit's phone); answered, `ivr/notify` reads the case number and
deadline in Mandarin and records key 1 (callback.notify.acknowledge). No key 1 by the hang-up: the
try missed, the next duty phone is tried (callback.notify.missed).

Exactly once, by the survey runner's rules: the try is committed `dialing` BEFORE the Originate,
which the port sends at most once; certainly not sent -> back to `scheduled`, same key; outcome
unknown -> left for `reconcile`, which asks Asterisk (callback/fate.py): still up -> watched to its
end; the ledger entry there -> the phone was dialled (a try, unless acknowledged); neither -> never
dialled, back to `scheduled`. The store side is callback/notify.py.
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

from callback import notify as N
from callback.fate import DIALLED, NEVER, UP, fate
from callback.pbx import ANSWERED, NoticePbx, NotSent, OutcomeUnknown, PbxError
from ticketing.domain import Domain
from ticketing.store import session_scope

log = logging.getLogger("callback.notify")


@dataclass
class NoticeOptions:
    context: str = "outbound-callback"
    caller_id: str = '"12345" <12345>'
    channel_prefix: str = ""      # namespace for channel ids on a shared Asterisk (tests)
    concurrency: int = 2          # notice calls at once
    settle_seconds: float = 3.0   # after start-up, before a dead process's calls are settled
    end_grace: float = 2.0        # after the hang-up, time for the AGI's acknowledgement to be committed
    check_seconds: float = 5.0    # a call watched is looked for in Asterisk this often (a missed hang-up)


@dataclass
class NoticeStats:
    placed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reconciled: dict[str, int] = field(default_factory=dict)

    def count(self, what: dict[str, int], key: str) -> None:
        what[key] = what.get(key, 0) + 1


def facts_of(c: N.Claimed, domain: Domain) -> dict[str, str]:
    """What the voice flow reads: the case number, the deadline's day and hour (local time); and whose
    line is called (`recipient`: unit or citizen, routed apart by the port)."""
    facts = {"case_number": c.case_number, "due_date": "", "due_hour": "", "recipient": c.recipient}
    if c.due_at is not None:
        local = c.due_at.astimezone(domain.calendar.tz)
        facts.update(due_date=local.date().isoformat(), due_hour=str(local.hour))
    return facts


def _line(role: str) -> str:
    return "the citizen's line" if role == N.CITIZEN else f"{role} duty phone"


class NoticeRunner:
    def __init__(self, domain: Domain, sessions: sessionmaker[Session], pbx: NoticePbx,
                 options: NoticeOptions | None = None, *, on_result: Callable[[str, str], Any] | None = None):
        self.domain = domain
        self.sessions = sessions
        self.pbx = pbx
        self.opts = options or NoticeOptions()
        self.on_result = on_result
        self.stats = NoticeStats()
        self._tasks: dict[int, asyncio.Task] = {}   # delivery id -> its call (placed or adopted)
        self._hangups: dict[str, asyncio.Event] = {}
        self._subs: list[Any] = []
        self._started_at = time.monotonic()
        self._lock = asyncio.Lock()
        self._stopping = False

    # ---- lifecycle ---------------------------------------------------------------------------
    def attach(self) -> None:
        if not self._subs:
            self._subs = [self.pbx.on_hangup(self._on_hangup)]

    def halt(self) -> None:
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

    def _on_hangup(self, channel_id: str) -> None:
        ev = self._hangups.get(channel_id)
        if ev is not None:
            ev.set()

    async def _tx(self, fn: Callable[[Session], Any]) -> Any:
        def run():
            with session_scope(self.sessions) as s:
                return fn(s)
        return await asyncio.to_thread(run)

    # ---- the sweep ---------------------------------------------------------------------------
    async def sweep(self) -> int:
        """Plan, settle a dead process's calls, and place due tries up to the cap. Returns calls placed."""
        if self._lock.locked() or self._stopping:
            return 0
        async with self._lock:
            self.attach()
            await self._tx(lambda s: N.plan(s, self.domain))
            await self.reconcile()
            placed = 0
            while self.pbx.connected and not self._stopping and len(self._tasks) < self.opts.concurrency:
                claimed = await self._tx(lambda s: N.claim(s, self.domain))
                if claimed is None:
                    break
                self._place(claimed)
                placed += 1
            return placed

    def _place(self, c: N.Claimed) -> None:
        chan = f"{self.opts.channel_prefix}{c.key}"
        self._hangups[chan] = asyncio.Event()  # before any of its events can arrive
        try:
            answer = self.pbx.originate_notice(
                phone=c.phone, key=c.key, channel_id=chan, context=self.opts.context, caller_id=self.opts.caller_id,
                ring_timeout=float(self.domain.policy.notifications.ring_s), facts=facts_of(c, self.domain))
        except Exception as exc:  # noqa: BLE001 - handled in the call's task
            answer = exc
        self.stats.placed += 1
        self._track(c.delivery_id, self._follow(c, chan, answer), f"notice {c.key}")

    def _track(self, delivery_id: int, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks[delivery_id] = task

        def done(t: asyncio.Task, did=delivery_id) -> None:
            self._tasks.pop(did, None)
            if not t.cancelled() and t.exception() is not None:
                log.error("notice delivery %s failed in the runner", did, exc_info=t.exception())
        task.add_done_callback(done)

    async def _follow(self, c: N.Claimed, chan: str, answer: Any) -> None:
        outcome = "unknown"
        try:
            try:
                if isinstance(answer, BaseException):
                    raise answer
                reply = await answer
            except NotSent:
                await self._tx(lambda s: N.unclaim(s, c.delivery_id, "not sent: no link to Asterisk"))
                outcome = "not_sent"
                return
            except OutcomeUnknown:
                log.warning("notice %s: Originate outcome unknown; will reconcile", c.key)
                return  # left `dialing`: reconcile asks Asterisk, never dial blindly again
            if reply.outcome != ANSWERED:
                # rang (or refused) without an answer: a try; the next duty phone is next
                detail = f"{_line(c.role)}: {reply.outcome} {reply.reason or ''}".strip()
                outcome = await self._missed(c.delivery_id, chan, detail)
                return
            await self._tx(lambda s: N.mark_answered(s, c.delivery_id))
            outcome = await self._settle_at_end(c.delivery_id, chan, c.role)
        finally:
            self._hangups.pop(chan, None)
            self.stats.count(self.stats.outcomes, outcome)
            if self.on_result is not None:
                with contextlib.suppress(Exception):
                    self.on_result(c.key, outcome)

    async def _missed(self, delivery_id: int, chan: str, detail: str) -> str:
        result = await self._tx(lambda s: N.missed(s, self.domain, delivery_id, detail))
        await self._forget_ledger(chan)
        if result is None:  # settled meanwhile (acknowledged, or by another process)
            return await self._tx(lambda s: N.state_of(s, delivery_id)) or "gone"
        return N.FAILED if result == N.FAILED else "not_acknowledged"

    async def _settle_at_end(self, delivery_id: int, chan: str, role: str) -> str:
        """Wait for the call to end; the acknowledgement, if any, was committed by the AGI by then."""
        await self._wait_end(chan)
        deadline = time.monotonic() + self.opts.end_grace
        while True:
            state = await self._tx(lambda s: N.state_of(s, delivery_id))
            if state == N.ACKNOWLEDGED or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)  # the AGI's transaction may lag the hang-up a little
        if state == N.ACKNOWLEDGED:
            await self._forget_ledger(chan)
            return N.ACKNOWLEDGED
        if role == N.CITIZEN:
            return await self._missed(delivery_id, chan, "the citizen's line answered, the notice not heard to its end")
        return await self._missed(delivery_id, chan, f"{_line(role)} answered, no key 1")

    async def _wait_end(self, chan: str) -> None:
        hung = self._hangups.setdefault(chan, asyncio.Event())
        while not hung.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hung.wait(), self.opts.check_seconds)
            if hung.is_set() or not self.pbx.connected:
                continue
            with contextlib.suppress(PbxError):
                if chan not in await self.pbx.channels_up(timeout=5):
                    return  # its hang-up was missed (link down meanwhile)

    async def _forget_ledger(self, chan: str) -> None:
        with contextlib.suppress(PbxError, OSError):
            await self.pbx.ledger_forget(chan, timeout=5)

    # ---- after a crash -------------------------------------------------------------------------
    async def reconcile(self) -> dict[str, int]:
        """Settle the tries in flight that no task of this process drives (a dead process's)."""
        if time.monotonic() - self._started_at < self.opts.settle_seconds:
            return {}  # an Originate written just before the crash may still be starting in Asterisk
        orphans = await self._tx(lambda s: N.orphans(s, set(self._tasks)))
        if not orphans or not self.pbx.connected:
            return {}
        try:
            alive = await self.pbx.channels_up(timeout=10)
        except PbxError:
            return {}
        done: dict[str, int] = {}
        for delivery_id, key, state in orphans:
            chan = f"{self.opts.channel_prefix}{key}"
            found = await fate(self.pbx, chan, alive)
            if found == UP:
                self._hangups.setdefault(chan, asyncio.Event())
                self._track(delivery_id, self._watch_adopted(delivery_id, chan), f"notice {key} (adopted)")
            elif found == DIALLED or (found == NEVER and state == N.ANSWERED):
                await self._missed(delivery_id, chan, "interrupted: dialled, not acknowledged")
            elif found == NEVER:
                await self._tx(lambda s, did=delivery_id: N.unclaim(s, did, "interrupted before the phone was dialled"))
            if found is not None:
                self.stats.count(done, found)
                self.stats.count(self.stats.reconciled, found)
        if done:
            log.info("voice notices reconciled: %s", done)
        return done

    async def _watch_adopted(self, delivery_id: int, chan: str) -> None:
        try:
            self.stats.count(self.stats.outcomes, await self._settle_at_end(delivery_id, chan, "adopted"))
        finally:
            self._hangups.pop(chan, None)

    # ---- run until nothing is due (tests, a CLI) -------------------------------------------------
    async def drain(self, *, timeout: float, poll: float = 0.5) -> NoticeStats:
        deadline = time.monotonic() + timeout
        while True:
            await self.sweep()
            if not self._tasks and not await self._tx(lambda s: N.due(s, self.domain)):
                return self.stats
            if time.monotonic() > deadline:
                raise TimeoutError("voice notices still running at the deadline")
            await asyncio.sleep(poll)


__all__ = ["NoticeOptions", "NoticeRunner", "NoticeStats", "facts_of"]
