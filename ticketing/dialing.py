"""How a dialled call ended, in the call log's words; which numbers are mobiles and which can be
called back.

Call control (transfers, three-way calls) and the callback runner both dial with an AMI Originate
and read the same answer; neither may import the other's package, so the meaning of Asterisk's
codes lives here, next to the call log they end up in. Each caller then decides what a word means
for it (a callback attempt's state, a transfer's next step).
"""
from __future__ import annotations

import re

# A mainland mobile number, with or without the country code.
MOBILE = re.compile(r"^(?:\+?86)?1[3-9]\d{9}$")
# What the hotline can dial back: a mobile, a landline with its area code (0 + 9-11 digits) or a
# local landline number (7-8 digits); not a withheld ("anonymous", empty) or service number.
CALLABLE = re.compile(r"^(?:\+?86)?(?:1[3-9]\d{9}|0\d{9,11}|[2-9]\d{6,7})$")


def dial_digits(number: str) -> str:
    """A roster number as the dialplan dials it: digits only ('0510-87900350' -> '051087900350')."""
    return re.sub(r"[^0-9]", "", number or "")


def is_callable(number: str | None) -> bool:
    return bool(CALLABLE.match((number or "").replace("-", "").replace(" ", "")))

# OriginateResponse "Reason": the dialled leg's last control frame (Asterisk's AST_CONTROL_*).
# 1 is the far end hanging up (or refusing) while it rang; 8 is congestion: no route, no network.
ORIGINATE_REASONS = {0: "failed", 1: "hangup", 3: "no_answer", 4: "answered", 5: "busy", 8: "unreachable"}


def dial_result(reason: str | int | None) -> str:
    """An OriginateResponse Reason as a word: "5" -> "busy"; one we do not know is "failed"."""
    try:
        return ORIGINATE_REASONS.get(int(reason or 0), "failed")
    except (TypeError, ValueError):
        return "failed"
