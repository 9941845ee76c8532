"""What the runners of ledger calls share (漏接回拨: callback/missed_runner.py, voice notices:
callback/notify_runner.py): the exactly-once rules around an Originate and the recovery after a
crash, written once. Each try is committed `dialing` BEFORE its Originate, which the port sends at
most once; certainly not sent -> back to `scheduled`, same key; outcome unknown -> left for
`reconcile`, which asks Asterisk what became of the call (callback/fate.py): still up -> watched to
its end (adopted); otherwise the subclass settles it from what the ledger says (dialled or never).

A subclass names its store side through the hooks: `_orphans`, `_due`, `_unclaim`, `_settle_at_end`
(an adopted call's end) and `_settle_orphan` (a call no longer up).
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

from callback.fate import UP, fate
from callback.pbx import NotSent, OutcomeUnknown, PbxError
from ticketing.domain import Domain
from ticketing.store import session_scope


@dataclass
class LedgerOptions:
    context: str = "outbound-callback"
    caller_id: str = '"12345" <12345>'
    channel_prefix: str = ""      # namespace for channel ids on a shared Asterisk (tests)
    settle_seconds: float = 3.0   # after start-up, before a dead process's calls are settled
    end_grace: float = 2.0        # after the hang-up, how long what the call left behind may lag
    check_seconds: float = 5.0    # a call watched is looked for in Asterisk this often (a missed hang-up)


@dataclass
class LedgerStats:
    placed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reconciled: dict[str, int] = field(default_factory=dict)

    def count(self, what: dict[str, int], key: str) -> None:
        what[key] = what.get(key, 0) + 1


class LedgerCallRunner:
    what = "ledger call"                        # in logs and task names
    many = "ledger calls"                       # in logs ("<many> reconciled: ...", read by operators' tools)
    log = logging.getLogger("callback.ledger")

    def __init__(self, domain: Domain, sessions: sessionmaker[Session], pbx: Any, options: LedgerOptions, *,
                 on_result: Callable[[str, str], Any] | None = None):
        self.domain = domain
        self.sessions = sessions
        self.pbx = pbx
        self.opts = options
        self.on_result = on_result
        self.stats = LedgerStats()
        self._tasks: dict[int, asyncio.Task] = {}   # try id -> its call (placed or adopted)
        self._hangups: dict[str, asyncio.Event] = {}
        self._subs: list[Any] = []
        self._started_at = time.monotonic()
        self._lock = asyncio.Lock()
        self._stopping = False

    # ---- lifecycle ---------------------------------------------------------------------------
    def _subscriptions(self) -> list[Any]:
        return [self.pbx.on_hangup(self._on_hangup)]

    def attach(self) -> None:
        if not self._subs:
            self._subs = self._subscriptions()

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

    async def _tx(self, fn: Callable[[Session], Any]) -> Any:
        def run():
            with session_scope(self.sessions) as s:
                return fn(s)
        return await asyncio.to_thread(run)

    # ---- one call --------------------------------------------------------------------------------
    def _track(self, try_id: int, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks[try_id] = task

        def done(t: asyncio.Task, tid=try_id) -> None:
            self._tasks.pop(tid, None)
            self._untracked(tid)
            if not t.cancelled() and t.exception() is not None:
                self.log.error("%s %s failed in the runner", self.what, tid, exc_info=t.exception())
        task.add_done_callback(done)

    def _untracked(self, try_id: int) -> None:
        """A try's task is over (a subclass forgets what it kept of it)."""

    def _call_over(self, chan: str) -> None:
        """What was kept of a call's channel goes (its task is over)."""
        self._hangups.pop(chan, None)

    async def _originated(self, try_id: int, key: str, answer: Any) -> tuple[Any, str | None]:
        """The Originate's reply, or (None, outcome) when there is none: certainly not sent -> the try
        goes back to `scheduled`; outcome unknown -> left `dialing` for reconcile (never re-sent)."""
        try:
            if isinstance(answer, BaseException):
                raise answer
            return await answer, None
        except NotSent:
            await self._tx(lambda s: self._unclaim(s, try_id, "not sent: no link to Asterisk"))
            return None, "not_sent"
        except OutcomeUnknown:
            self.log.warning("%s %s: Originate outcome unknown; will reconcile", self.what, key)
            return None, "unknown"

    def _report(self, key: str, chan: str, outcome: str) -> None:
        self._call_over(chan)
        self.stats.count(self.stats.outcomes, outcome)
        if self.on_result is not None:
            with contextlib.suppress(Exception):
                self.on_result(key, outcome)

    async def _hung_up(self, chan: str) -> None:
        """Until the call's hang-up is seen, or Asterisk no longer has it (a hang-up missed while the
        link was down)."""
        hung = self._hangups.setdefault(chan, asyncio.Event())
        while not hung.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hung.wait(), self.opts.check_seconds)
            if hung.is_set() or not self.pbx.connected:
                continue
            with contextlib.suppress(PbxError):
                if chan not in await self.pbx.channels_up(timeout=5):
                    return

    async def _forget_ledger(self, chan: str) -> None:
        with contextlib.suppress(PbxError, OSError):
            await self.pbx.ledger_forget(chan, timeout=5)

    # ---- after a crash -------------------------------------------------------------------------
    async def reconcile(self) -> dict[str, int]:
        """Settle the tries in flight that no task of this process drives (a dead process's)."""
        if time.monotonic() - self._started_at < self.opts.settle_seconds:
            return {}  # an Originate written just before the crash may still be starting in Asterisk
        orphans = await self._tx(lambda s: self._orphans(s, set(self._tasks)))
        if not orphans or not self.pbx.connected:
            return {}
        try:
            alive = await self.pbx.channels_up(timeout=10)
        except PbxError:
            return {}
        done: dict[str, int] = {}
        for try_id, key, state in orphans:
            chan = self._channel_id(key)
            found = await fate(self.pbx, chan, alive)
            if found == UP:
                self._hangups.setdefault(chan, asyncio.Event())
                self._track(try_id, self._watch_adopted(try_id, chan), f"{self.what} {key} (adopted)")
            elif found is not None:
                await self._settle_orphan(try_id, chan, state, found)
            if found is not None:
                self.stats.count(done, found)
                self.stats.count(self.stats.reconciled, found)
        if done:
            self.log.info("%s reconciled: %s", self.many, done)
        return done

    async def _watch_adopted(self, try_id: int, chan: str) -> None:
        try:
            self.stats.count(self.stats.outcomes, await self._settle_at_end(try_id, chan))
        finally:
            self._call_over(chan)

    # ---- run until nothing is due (tests, a CLI) -------------------------------------------------
    async def sweep(self) -> int:
        raise NotImplementedError

    async def drain(self, *, timeout: float, poll: float = 0.5) -> LedgerStats:
        deadline = time.monotonic() + timeout
        while True:
            await self.sweep()
            if not self._tasks and not await self._tx(lambda s: self._due(s)):
                return self.stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.many} still running at the deadline")
            await asyncio.sleep(poll)

    # ---- the store side, per kind of call ------------------------------------------------------
    def _orphans(self, session: Session, mine: set[int]) -> list[tuple[int, str, str]]:
        raise NotImplementedError

    def _due(self, session: Session) -> Any:
        raise NotImplementedError

    def _unclaim(self, session: Session, try_id: int, reason: str) -> Any:
        raise NotImplementedError

    async def _settle_at_end(self, try_id: int, chan: str) -> str:
        raise NotImplementedError

    async def _settle_orphan(self, try_id: int, chan: str, state: str, found: str) -> None:
        raise NotImplementedError
