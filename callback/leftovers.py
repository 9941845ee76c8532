"""What a killed scheduler leaves in Asterisk, taken in hand by the next one (issue 19 item 6).

Calls still up: a process killed mid-batch leaves its calls talking to citizens, and some of them
are already settled in the store (the survey's AGI handler stored the rating while the thank-you
still plays), so the store's view alone under-counts the lines in use. Before its first call the
runner asks Asterisk for the callback calls it still carries (`carried`) and counts them against
the concurrency cap until each hangs up (its Hangup event; a refresh with every planning pass
catches one missed while the link was down). The writer counts a carried call once, whether or
not the store still has its attempt in flight.

Ledger entries: `[outbound-callback]` writes one per dial (callcenter_callback/<ledger id>); the
runner deletes it once the attempt is settled. A kill between the two, or an attempt the survey
settled while no runner was alive, leaves one behind: every planning pass (the first one at start)
and the end of a drain delete the entries whose attempts are settled. An entry whose attempt is
still open, or unknown to this store, is left alone: it is what reconcile relies on.
`Leftovers` is a part of `CallbackRunner` (callback/runner.py), whose `__init__` holds its state.
"""
from __future__ import annotations

import logging

from callback import attempts as A
from callback.pbx import PbxError

log = logging.getLogger("callback.runner")

_KEYS_PER_QUERY = 500  # the store is asked about the ledger's ids in pages of this many


class Leftovers:
    """Calls still up from before the start, and the sweep of settled ledger entries."""

    @property
    def _lines_known(self) -> bool:
        """Whether the lines taken in Asterisk are known. Without a link nothing can be dialled
        (an Originate is `NotSent`), so claims go on then as before."""
        return self._carried is not None or not self.pbx.connected

    async def _learn_carried(self) -> None:
        try:
            up = await self.pbx.callback_calls(self.opts.context, timeout=10)
        except PbxError as exc:
            log.warning("callback: cannot list the calls Asterisk carries (%s); no call placed yet", exc)
            return
        # ours: the calls this runner placed or adopted (kept across a step-down and return)
        self._carried = {c for c in up if c.startswith(self.opts.channel_prefix)} - set(self._hangups)
        self.stats.still_up += len(self._carried)
        if self._carried:
            log.info("callback: %d call(s) still up from before; they hold lines until they end", len(self._carried))
            self._changed.set()

    async def _refresh_carried(self) -> None:
        if not self._carried:
            return
        try:
            up = await self.pbx.callback_calls(self.opts.context, timeout=10)
        except PbxError:
            return
        if self._carried is not None and self._carried - up:
            self._carried &= up  # a hangup missed (link down): the line is free
            self._kick()

    def _carried_hung_up(self, channel_id: str) -> None:
        if self._carried and channel_id in self._carried:
            self._carried.discard(channel_id)
            self._kick()  # a line is free: the writer's next pass fills it
            self._changed.set()

    def _carried_keys(self) -> list[str]:
        n = len(self.opts.channel_prefix)
        return [c[n:] for c in self._carried or ()]

    async def _sweep_ledger(self) -> int:
        """Delete the ledger entries of settled attempts; returns how many went."""
        if not self.pbx.connected:
            return 0
        try:
            ids = await self.pbx.ledger_ids(timeout=10)
        except PbxError:
            return 0
        n = len(self.opts.channel_prefix)
        by_key = {i[n:]: i for i in ids if i.startswith(self.opts.channel_prefix)}
        keys = list(by_key)
        settled: set[str] = set()
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            page = keys[start:start + _KEYS_PER_QUERY]
            settled |= await self._tx(lambda s, page=page: A.settled_keys(s, page))
        for key in settled:
            await self._forget_ledger(by_key[key])
        if settled:
            self.stats.ledger_removed += len(settled)
            log.info("callback: %d ledger entr%s of settled attempts removed", len(settled),
                     "y" if len(settled) == 1 else "ies")
        return len(settled)


__all__ = ["Leftovers"]
