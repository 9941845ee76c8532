"""Masking of phone numbers for logs (citizens' numbers are personal data: ``138****5678``)."""
from __future__ import annotations

import re

# 7+ digits in a row, optionally with a leading +, not part of a longer digit run and not the
# integer part of a decimal (Asterisk Uniqueid/Linkedid/timestamps look like ``1732547203.45``
# and are needed in clear to follow a call through the logs).
_PHONE_RE = re.compile(r"(?<![\d.])\+?\d{7,}(?!\d|\.\d)")


def _mask(match: re.Match[str]) -> str:
    text = match.group(0)
    plus = "+" if text.startswith("+") else ""
    digits = text[len(plus):]
    if len(digits) >= 11:
        head, tail = 3, 4
    else:
        head, tail = 2, 2
    return plus + digits[:head] + "*" * (len(digits) - head - tail) + digits[-tail:]


def mask_phone_numbers(text: str) -> str:
    """``PJSIP/13812345678@trunk`` -> ``PJSIP/138****5678@trunk``; short numbers (12345, 110) stay."""
    return _PHONE_RE.sub(_mask, text)
