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
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from callback import missed as M
from callback.fate import DIALLED, NEVER, fate
from callback.ledger_calls import LedgerCallRunner, LedgerOptions, LedgerStats
from callback.pbx import ANSWERED, MissedCallPbx, PbxError
from ticketing.domain import Domain

log = logging.getLogger("callback.missed")
MissedStats = LedgerStats


@dataclass
class MissedOptions(LedgerOptions):
    # end_grace: after the hang-up, how long the call's end event (dial status) may lag
    operator_rest: float = 60.0   # an operator who let the phone ring out is not rung again before this


class MissedCallbackRunner(LedgerCallRunner):
    what = "missed callback"
    many = "missed-call callbacks"
    log = log

    def __init__(self, domain: Domain, sessions: sessionmaker[Session], pbx: MissedCallPbx,
                 options: MissedOptions | None = None, *, on_result: Callable[[str, str], Any] | None = None):
        super().__init__(domain, sessions, pbx, options or MissedOptions(), on_result=on_result)
        self._operators: dict[int, str] = {}        # attempt id -> the operator it rings
        self._ends: dict[str, str] = {}             # channel id -> dial status of its end event
        self._resting: dict[str, float] = {}        # operator -> not rung again before (monotonic)

    def _subscriptions(self) -> list[Any]:
        return [*super()._subscriptions(), self.pbx.on_callback_end(self._on_end)]

    def _on_end(self, channel_id: str, dial_status: str) -> None:
        if channel_id in self._hangups:
            self._ends[channel_id] = dial_status

    def _untracked(self, attempt_id: int) -> None:
        self._operators.pop(attempt_id, None)

    def _call_over(self, chan: str) -> None:
        super()._call_over(chan)
        self._ends.pop(chan, None)

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

    async def _follow(self, c: M.Claimed, chan: str, answer: Any) -> None:
        outcome = "unknown"
        try:
            reply, not_answered = await self._originated(c.attempt_id, c.key, answer)
            if reply is None:
                outcome = not_answered
                return
            if reply.outcome != ANSWERED:
                # the operator's phone was not answered: the citizen was never dialled
                self._resting[c.operator] = time.monotonic() + self.opts.operator_rest
                await self._tx(lambda s: M.unclaim(s, c.attempt_id, f"operator {c.operator} did not answer"))
                outcome = "operator_missed"
                return
            await self._tx(lambda s: M.mark_answered(s, self.domain, c.attempt_id))
            outcome = await self._settle_at_end(c.attempt_id, chan)
        finally:
            self._report(c.key, chan, outcome)

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
        await self._hung_up(chan)
        deadline = time.monotonic() + self.opts.end_grace
        while chan not in self._ends and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the end event is sent before the hang-up; a lagging one is waited for
        return self._ends.get(chan)

    # ---- the store side --------------------------------------------------------------------------
    def _orphans(self, session: Session, mine: set[int]):
        return M.orphans(session, mine)

    def _due(self, session: Session):
        return M.due(session, self.domain)

    def _unclaim(self, session: Session, attempt_id: int, reason: str):
        return M.unclaim(session, attempt_id, reason)

    async def _settle_orphan(self, attempt_id: int, chan: str, state: str, found: str) -> None:
        if found == DIALLED:
            await self._tx(lambda s: M.finish(s, self.domain, attempt_id, reached=False,
                                              detail="interrupted: dialled, outcome unknown"))
            await self._forget_ledger(chan)
        elif found == NEVER:
            await self._tx(lambda s: M.unclaim(s, attempt_id, "interrupted before the citizen was dialled")
                           if state == M.DIALING else M.finish(s, self.domain, attempt_id, reached=False,
                                                               detail="interrupted"))


__all__ = ["MissedCallbackRunner", "MissedOptions", "MissedStats"]
