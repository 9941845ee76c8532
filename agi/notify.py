"""AGI entry point `ivr/notify`: a voice notice on a call placed by callback/notify_runner.py
(issue 14). The dialplan passes the try's key, the case number and the deadline
(`ivr/notify?key=...&case=...&due=YYYY-MM-DD&hour=H`). A notice to a unit's duty phone (R7.7 urge)
runs ivr_flows/notify.yaml, key 1 recorded by the flow's `acknowledge_notice`; a notice to a citizen
(R8.2, the portal's confirmation: the ledger knows the key) runs ivr_flows/citizen_notice.yaml with
the facts read from the store, heard to its end recorded by the same action."""
from __future__ import annotations

import logging

from ivr_flows.actions import unit_prompt_name
from ticketing.store import session_scope

from .channel import AGIChannel
from .hotline import Hotline, run_flow
from .loopdb import within_deadline

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
    citizen = await _citizen_facts(hotline, key)
    if citizen is not None:
        await run_flow(hotline, channel, "citizen_notice", citizen,
                       purpose="notice", direction="outbound", callback_key=key)
        return
    due_date, due_hour = query.get("due", ""), query.get("hour", "")
    await run_flow(hotline, channel, "notify",
                   {"case_number": case_number, "due_date": due_date,
                    "due_hour": due_hour if due_hour.isdigit() else "0"},
                   purpose="notice", direction="outbound", callback_key=key)


async def _citizen_facts(hotline: Hotline, key: str) -> dict[str, str] | None:
    def read():
        with session_scope(hotline.session_factory) as s:
            return hotline.notices.citizen_facts(s, hotline.domain, key)
    facts = await within_deadline(hotline.store_deadline_s, read)
    rendered = {unit_prompt_name(u.code) for u in hotline.domain.city.units}  # callcenter/pbx/prompts.py
    if facts is not None and facts.get("unit_prompt") not in rendered:
        facts["unit_prompt"] = ""  # a unit the prompts were not rendered for: the notice says "the unit"
    return facts


__all__ = ["run_notify"]
