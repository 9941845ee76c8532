"""AGI entry point `ivr/notify`: a voice notice on a call placed by callback/notify_runner.py
(issue 14 item 5; R7.7 urge to a unit's duty phone). The dialplan passes the try's key, the case
number and the deadline (`ivr/notify?key=...&case=...&due=YYYY-MM-DD&hour=H`); key 1 is recorded by
the flow's `acknowledge_notice` action (Hotline.notices)."""
from __future__ import annotations

import logging

from .channel import AGIChannel
from .hotline import Hotline, run_flow

log = logging.getLogger("agi.notify")


async def run_notify(hotline: Hotline, channel: AGIChannel) -> None:
    if hotline.notices is None:
        raise RuntimeError("ivr/notify needs the notice ledger: Hotline.create(..., notices=...)")
    query = channel.request.query
    key, case_number = query.get("key", ""), query.get("case", "")
    if not key or not case_number:
        log.warning("notice call %s without a key or case number; hanging up",
                    channel.request.env.get("agi_uniqueid", ""))
        return
    due_date, due_hour = query.get("due", ""), query.get("hour", "")
    await run_flow(hotline, channel, "notify",
                   {"case_number": case_number, "due_date": due_date,
                    "due_hour": due_hour if due_hour.isdigit() else "0"},
                   purpose="notice", direction="outbound", callback_key=key)


__all__ = ["run_notify"]
