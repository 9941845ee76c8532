"""Small helpers shared by the FastAGI server: masking personal data for logs."""
from __future__ import annotations

import re

__all__ = ["mask_number", "mask_in_text"]

# A run of 7+ digits (optionally with a leading +) is treated as a phone number.
# Not masked: digits glued to a "." and more digits (Asterisk uniqueids such as
# 1732512345.42 are timestamps, and masking them would break log correlation).
_NUMBER_RE = re.compile(r"(?<![\d.])\+?\d{7,}(?!\d)(?!\.\d)")


def mask_number(number: str | None) -> str:
    """Mask a phone number for logs: "13812345678" -> "138****5678".

    Keeps the first 3 and last 4 characters of numbers of 11+ characters, the
    first 2 and last 2 of 7–10 character numbers (local landlines). Shorter
    strings (extensions, service numbers like 12345, "unknown") are not
    personal and are returned unchanged. None -> "".
    """
    if not number:
        return ""
    s = str(number)
    n = len(s)
    if n >= 11:
        return s[:3] + "*" * (n - 7) + s[-4:]
    if n >= 7:
        return s[:2] + "*" * (n - 4) + s[-2:]
    return s


def mask_in_text(text: str) -> str:
    """Mask every phone-number-looking run of digits inside free text."""
    return _NUMBER_RE.sub(lambda m: mask_number(m.group(0)), text)
