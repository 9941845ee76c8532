"""An in-memory `callback.pbx.MissedCallPbx` for the missed-call callback runner's tests: an
operator's phone answers (or not), then, like `[outbound-callback]`, the ledger entry is written
and the citizen dialled; the call ends at once or when the test releases it, with the citizen's
dial status. Counts what an exactly-once check needs: rings per operator, citizen dials per key."""
from __future__ import annotations

import asyncio
from collections import Counter

from callback.pbx import ANSWERED, NOT_ANSWERED, DialResult, NotSent


class _Sub:
    def __init__(self, subs: list, cb) -> None:
        self.subs, self.cb = subs, cb
        subs.append(cb)

    def close(self) -> None:
        if self.cb in self.subs:
            self.subs.remove(self.cb)


class FakeMissedPbx:
    def __init__(self, operators=("8001",)) -> None:
        self.connected = True
        self.operators = list(operators)
        self.operator_answers = True
        self.citizen_status = "ANSWER"
        self.hold = False                       # True: answered calls stay up until `release`
        self.rings: list[tuple[str, str, str]] = []   # (operator, number, channel id), in order
        self.citizen_dials: Counter[str] = Counter()  # channel id -> the citizen dialled
        self.ledger: set[str] = set()
        self.up: set[str] = set()
        self._release: dict[str, asyncio.Event] = {}
        self._hangups: list = []
        self._ends: list = []

    # ---- MissedCallPbx -------------------------------------------------------------------------
    async def free_operators(self, timeout: float) -> list[str]:
        return list(self.operators)

    def originate_via_operator(self, *, operator, phone, key, channel_id, context, caller_id, ring_timeout):
        if not self.connected:
            raise NotSent("link down")
        self.rings.append((operator, phone, channel_id))
        self.up.add(channel_id)
        answer = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().create_task(self._call(channel_id, answer))
        return answer

    async def _call(self, chan: str, answer: asyncio.Future) -> None:
        await asyncio.sleep(0)
        if not self.operator_answers:
            self.up.discard(chan)
            answer.set_result(DialResult(NOT_ANSWERED, reason=3))
            return
        self.ledger.add(chan)  # the dialplan notes it before it dials the citizen
        self.citizen_dials[chan] += 1
        answer.set_result(DialResult(ANSWERED))
        if self.hold:
            await self._release.setdefault(chan, asyncio.Event()).wait()
        self.end(chan, self.citizen_status)

    def end(self, chan: str, status: str | None) -> None:
        """The call ends: its end event (when `status`), then its hang-up."""
        self.up.discard(chan)
        if status is not None:
            for cb in list(self._ends):
                cb(chan, status)
        for cb in list(self._hangups):
            cb(chan)

    def release(self, chan: str) -> None:
        self._release.setdefault(chan, asyncio.Event()).set()

    def on_callback_end(self, callback):
        return _Sub(self._ends, callback)

    # ---- CallbackPbx (what the runner uses of it) ------------------------------------------------
    def on_hangup(self, callback):
        return _Sub(self._hangups, callback)

    async def channels_up(self, timeout: float) -> set[str]:
        return set(self.up)

    async def ledger_has(self, channel_id: str, timeout: float) -> bool:
        return channel_id in self.ledger

    async def ledger_forget(self, channel_id: str, timeout: float) -> None:
        self.ledger.discard(channel_id)
