"""Citizens' notices by SMS (issue 14; R8.2 when the unit chose `auto_sms`, the portal's confirmation
where SMS is configured): the same deliveries, tries and calling hours as the voice calls
(callback/notify.py), sent through an `SmsSender` (callcenter/twilio/sms.py's `TwilioSms` on Twilio).
Accepted by the carrier = delivered (on the case's audit trail); refused (an opted-out number, a
carrier error): tried again after `retry_minutes`, then failed.

At most once: a try is committed `dialing` before the message is handed over; one found `dialing`
at the start of a sweep belongs to a process that died while sending and is failed, not sent again
(the carrier's own record, callcenter/twilio/sms.py's `sms_messages`, says whether it went).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from callback import notify as N
from callback.notices import sms_text
from ticketing.domain import Domain
from ticketing.store import session_scope

log = logging.getLogger("callback.notify_sms")


class SmsSender(Protocol):
    def send(self, to: str, text: str) -> str:
        """Hand `text` to the carrier for `to`; returns its message id, raises if it was refused."""


class SmsNotices:
    def __init__(self, domain: Domain, sessions: sessionmaker[Session], sender: SmsSender, *, batch: int = 20):
        self.domain, self.sessions, self.sender, self.batch = domain, sessions, sender, batch
        self._lock = asyncio.Lock()

    async def _tx(self, fn: Callable[[Session], Any]) -> Any:
        def run():
            with session_scope(self.sessions) as s:
                return fn(s)
        return await asyncio.to_thread(run)

    def _settle_orphans(self, s: Session) -> None:
        """Only the leader sweeps, one sweep at a time: a try `dialing` now is a dead process's."""
        for delivery_id, _key, _state in N.orphans(s, (), channel=N.SMS):
            N.missed(s, self.domain, delivery_id, "interrupted while sending: not sent again (see the SMS log)")

    async def sweep(self) -> int:
        """Plan, settle a dead process's sends, and send what is due. Returns messages accepted."""
        if self._lock.locked():
            return 0
        async with self._lock:
            await self._tx(lambda s: N.plan(s, self.domain))
            await self._tx(self._settle_orphans)
            sent = 0
            for _ in range(self.batch):
                claimed = await self._tx(lambda s: N.claim(s, self.domain, channel=N.SMS))
                if claimed is None:
                    break
                text = await self._tx(lambda s, key=claimed.key: sms_text(s, self.domain, key))
                try:
                    await asyncio.to_thread(self.sender.send, claimed.phone, text)
                except Exception as exc:  # noqa: BLE001 - any refusal is a try that missed
                    log.warning("notice SMS %s not sent: %s", claimed.key, type(exc).__name__)
                    await self._tx(lambda s, c=claimed, e=exc: N.missed(
                        s, self.domain, c.delivery_id, f"sms not sent: {type(e).__name__}"))
                    continue
                await self._tx(lambda s, c=claimed: N.acknowledge(s, self.domain, c.key))
                sent += 1
            return sent


__all__ = ["SmsNotices", "SmsSender"]
