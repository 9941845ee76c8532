"""Which driver answers a number that reaches Twilio (CALLCENTER_TWILIO_NUMBERS, by the dialled number):

    twilio    the flow runs on Twilio (the default)
    asterisk  Twilio only forwards the call to the install's PBX (<Dial><Sip>): Asterisk runs the menu
    overflow  forwarded to the PBX while the Asterisk is healthy; run on Twilio while it is not

A call run on Twilio carries a `carrier` call event {"driver": "twilio", "overflow": bool}; a call the
PBX carried is logged by the Asterisk path as always. Health: the call-control link's state when this
process holds it (read, never probed), else a TCP connect to the AMI port, remembered a few seconds so
a burst of calls does not probe the PBX once each.
"""
from __future__ import annotations

import asyncio
import time
from typing import Literal

MODES = ("twilio", "asterisk", "overflow")
Mode = Literal["twilio", "asterisk", "overflow"]
PROBE_TIMEOUT_S = 0.5
PROBE_MEMORY_S = 5.0


def mode_for(settings, number: str) -> str:
    """The number's mode; a number not listed (or listed with an unknown mode) runs on Twilio."""
    mode = (settings.twilio_numbers or {}).get(number, "twilio")
    return mode if mode in MODES else "twilio"


async def asterisk_healthy(app) -> bool:
    custom = getattr(app.state, "twilio_asterisk_health", None)  # tests, or a deployment's own check
    if custom is not None:
        return bool(custom())
    cc = app.state.callcontrol
    if cc is not None:
        return bool(cc.link.connected)
    remembered = getattr(app.state, "_twilio_probe", None)
    if remembered is not None and time.monotonic() - remembered[0] < PROBE_MEMORY_S:
        return remembered[1]
    settings = app.state.settings
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(settings.ami_host, settings.ami_port),
                                                 PROBE_TIMEOUT_S)
        writer.close()
        healthy = True
    except (OSError, TimeoutError):
        healthy = False
    app.state._twilio_probe = (time.monotonic(), healthy)
    return healthy


async def carried_by_asterisk(app, number: str) -> bool:
    """True when this call goes to the PBX (a SIP URI to send it to must be configured)."""
    settings = app.state.settings
    mode = mode_for(settings, number)
    if mode == "twilio" or not settings.twilio_pbx_sip_uri:
        return False
    return mode == "asterisk" or await asterisk_healthy(app)
