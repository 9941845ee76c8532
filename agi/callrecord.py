"""Who a FastAGI session's call is, and its call record (A2), for every flow a channel runs."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from .channel import AGIChannel

if TYPE_CHECKING:
    from .hotline import CallContext


def caller_of(channel: AGIChannel) -> str:
    caller = channel.request.env.get("agi_callerid", "")
    return "" if caller in ("unknown", "<unknown>") else caller


async def open_call_of(ctx: CallContext, channel: AGIChannel, started: datetime, *, direction: str = "inbound",
                       purpose: str = "hotline") -> None:
    """The channel's call record, written by ctx's next transaction (calls.open_call: the row
    already there if this channel ran a flow before). The dialplan passes the linkedid as the AGI's
    first argument (AGI(agi://.../ivr/main,${CHANNEL(linkedid)})): one round trip fewer."""
    env, args = channel.request.env, channel.request.args
    uniqueid = env.get("agi_uniqueid", "")
    linkedid = args[0] if args and args[0] else (await channel.get_variable("CHANNEL(linkedid)")) or uniqueid
    ctx.open_call_with_first_tx(
        uniqueid=uniqueid, linkedid=linkedid, direction=direction, purpose=purpose, caller_number=ctx.caller,
        callee_number=env.get("agi_dnid", "") or env.get("agi_extension", ""), started_at=started,
        answered_at=started)
