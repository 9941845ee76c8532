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
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from callback import notify as N
from callback.fate import DIALLED, NEVER
from callback.ledger_calls import LedgerCallRunner, LedgerOptions, LedgerStats
from callback.pbx import ANSWERED, NoticePbx
from ticketing.domain import Domain

NoticeStats = LedgerStats


@dataclass
class NoticeOptions(LedgerOptions):
    concurrency: int = 2          # notice calls at once
    # end_grace: after the hang-up, time for the AGI's acknowledgement to be committed


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


class NoticeRunner(LedgerCallRunner):
    what = "notice"
    many = "voice notices"
    log = logging.getLogger("callback.notify")

    def __init__(self, domain: Domain, sessions: sessionmaker[Session], pbx: NoticePbx,
                 options: NoticeOptions | None = None, *, on_result: Callable[[str, str], Any] | None = None):
        super().__init__(domain, sessions, pbx, options or NoticeOptions(), on_result=on_result)

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
        chan = self._channel_id(c.key)
        self._hangups[chan] = asyncio.Event()  # before any of its events can arrive
        try:
            answer = self.pbx.originate_notice(
                phone=c.phone, key=c.key, channel_id=chan, context=self.opts.context, caller_id=self.opts.caller_id,
                ring_timeout=float(self.domain.policy.notifications.ring_s), facts=facts_of(c, self.domain))
        except Exception as exc:  # noqa: BLE001 - handled in the call's task
            answer = exc
        self.stats.placed += 1
        self._track(c.delivery_id, self._follow(c, chan, answer), f"notice {c.key}")

    async def _follow(self, c: N.Claimed, chan: str, answer: Any) -> None:
        outcome = "unknown"
        try:
            reply, not_answered = await self._originated(c.delivery_id, c.key, answer)
            if reply is None:
                outcome = not_answered
                return
            if reply.outcome != ANSWERED:
                # rang (or refused) without an answer: a try; the next duty phone is next
                detail = f"{_line(c.role)}: {reply.outcome} {reply.reason or ''}".strip()
                outcome = await self._missed(c.delivery_id, chan, detail)
                return
            await self._tx(lambda s: N.mark_answered(s, c.delivery_id))
            outcome = await self._settle_at_end(c.delivery_id, chan, c.role)
        finally:
            self._report(c.key, chan, outcome)

    async def _missed(self, delivery_id: int, chan: str, detail: str) -> str:
        result = await self._tx(lambda s: N.missed(s, self.domain, delivery_id, detail))
        await self._forget_ledger(chan)
        if result is None:  # settled meanwhile (acknowledged, or by another process)
            return await self._tx(lambda s: N.state_of(s, delivery_id)) or "gone"
        return N.FAILED if result == N.FAILED else "not_acknowledged"

    async def _settle_at_end(self, delivery_id: int, chan: str, role: str = "adopted") -> str:
        """Wait for the call to end; the acknowledgement, if any, was committed by the AGI by then."""
        await self._hung_up(chan)
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

    # ---- the store side --------------------------------------------------------------------------
    def _orphans(self, session: Session, mine: set[int]):
        return N.orphans(session, mine)

    def _due(self, session: Session):
        return N.due(session, self.domain)

    def _unclaim(self, session: Session, delivery_id: int, reason: str):
        return N.unclaim(session, delivery_id, reason)

    async def _settle_orphan(self, delivery_id: int, chan: str, state: str, found: str) -> None:
        if found == DIALLED or (found == NEVER and state == N.ANSWERED):
            await self._missed(delivery_id, chan, "interrupted: dialled, not acknowledged")
        elif found == NEVER:
            await self._tx(lambda s: N.unclaim(s, delivery_id, "interrupted before the phone was dialled"))


__all__ = ["NoticeOptions", "NoticeRunner", "NoticeStats", "facts_of"]
