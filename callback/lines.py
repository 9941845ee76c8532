"""The callback runner's lines: ready attempts (claimed and committed as `dialing` by the writer,
callback/writer.py) are dialled into free lines, ChannelId = the attempt's ledger id, through the
PBX port (callback/pbx.py, sent at most once), and each call is followed to its outcome. Not
answered -> busy / no answer / failed by its Reason: retry with backoff or the manual list
(callback/attempts.py); answered -> the survey runs over FastAGI (`ivr/survey`, agi/hotline.py),
which stores the rating, and the line stays taken until the channel hangs up (the attempt is marked
failed if the survey never finished); certainly not sent -> back to `scheduled` with the same key;
outcome unknown -> left `dialing` for reconcile (callback/runner.py), never dialled blindly again.
A ready attempt not dialled within `ready_seconds` is put back, as are all of them when the runner
stops or steps down. `LineDriver` is a part of `CallbackRunner`, whose `__init__` holds the state
it works on.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from callback import attempts as A
from callback.pbx import ANSWERED, REFUSED, NotSent, OutcomeUnknown, PbxError
from ticketing.dialing import dial_result
from ticketing.privacy import mask_phone

log = logging.getLogger("callback.runner")


@dataclass
class CallResult:
    key: str
    outcome: str            # answered, busy, no_answer, failed, not_sent, unknown
    reason: int | None = None
    seconds: float = 0.0    # the whole attempt, bookkeeping included
    dial_seconds: float = 0.0  # Originate sent -> OriginateResponse
    line_seconds: float = 0.0  # Originate sent -> the line is free again (what the cap holds)


class LineDriver:
    """The lines of `CallbackRunner`: ready attempts, dialling, each call's outcome, freed lines."""

    # ---- ready attempts --------------------------------------------------------------------
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

    # ---- the lines ---------------------------------------------------------------------------
    def _launch(self) -> None:
        """Dial ready attempts into the free lines (no store round trip: they are committed)."""
        if self._stopping or self._paused_now:
            if self._ready:
                self._drop_ready()
            return
        free = self.domain.policy.callback.concurrency - len(self._calling) - len(self._adopted) - self._others
        if not self._lines_known:
            free = 0  # lines taken by calls from before the start not counted yet
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
    def _on_hangup(self, channel_id: str) -> None:
        ev = self._hangups.get(channel_id)
        if ev is not None:
            ev.set()
        else:
            self._carried_hung_up(channel_id)

    @property
    def _carrier(self) -> str:
        return getattr(self.pbx, "carrier", "asterisk")  # (a test's fake port may not say)

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
                await self._record(A.Unsuccessful(c.attempt_id, A.FAILED, detail, log_call=True,
                                                  channel_id=reply.uniqueid or chan, started_at=sent_at,
                                                  carrier=self._carrier))
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
                                              log_call=True, channel_id=reply.uniqueid or chan, started_at=sent_at,
                                              carrier=self._carrier))
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


__all__ = ["CallResult", "LineDriver"]
