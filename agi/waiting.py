"""AGI entry point `ivr/waiting`: self-service for a caller waiting in the operator queue.

GB/T 33358-2016 advises against a voice menu before an operator; the menu's self-service is offered
while the caller waits instead. The queue announces it (asterisk/queues.conf periodic-announce); key 5
takes the caller out of the queue (queues.conf `context`) into [queue-self-service], which runs this:
the main menu's own progress enquiry (ivr_flows/main.yaml, entry `waiting`), then the dialplan puts
the caller back at their place in the queue, whatever happened here.

The call's record (opened by the menu on this same channel) gets one `self_service` event: the path
through the flow, the case asked about, how it ended. The queue side, the exit and the return, is
logged by the call log from the dialplan's UserEvents (the queue events' one writer).
"""
from __future__ import annotations

import logging

from ivr_flows.engine import FlowRunner
from ticketing import calls
from ticketing.privacy import mask_phone, mask_text
from ticketing.writer import Run

from .callrecord import caller_of, open_call_of
from .channel import AGIChannel
from .driver import AGIDriver
from .hotline import CallContext, Hotline, main_flow_variables

log = logging.getLogger("agi.waiting")

ENTRY = "waiting"  # ivr_flows/main.yaml `entries`
EVENT = "self_service"


async def run_waiting(hotline: Hotline, channel: AGIChannel) -> None:
    uniqueid = channel.request.env.get("agi_uniqueid", "")
    ctx = CallContext(hotline, caller_of(channel))
    started = hotline.domain.clock()
    try:
        await open_call_of(ctx, channel, started)
        driver = AGIDriver(channel, recordings_dir=hotline.recordings_dir, uniqueid=uniqueid,
                           prompt_dir=AGIDriver.prompt_dir_for(channel.request.query))
        runner = FlowRunner(hotline.flows["main"], driver, ctx.actions(),
                            {"caller": ctx.caller, **main_flow_variables(hotline.domain.policy)},
                            mask_text=mask_text, entry=ENTRY)
        result = await runner.run()
        # What the caller did, not what they typed: the case asked about is named (no personal data).
        data = {"path": result.path, "outcome": result.outcome, "reason": result.reason,
                "case_number": ctx.case_number, "uniqueid": uniqueid}

        def record(run: Run) -> None:
            calls.add_event(run, ctx.call_id, kind=EVENT, at=started, data=data,
                            dedup_key=f"agi:{EVENT}:{uniqueid}:{started.timestamp():.6f}")
        await ctx.run(record)
        log.info("call %s (%s) from %s: self-service in the queue: %s via %s%s", ctx.call_id, uniqueid,
                 mask_phone(ctx.caller) or "unknown", result.outcome, ">".join(result.path),
                 f", case {ctx.case_number}" if ctx.case_number else "")
    finally:
        ctx.close()


__all__ = ["ENTRY", "EVENT", "run_waiting"]
