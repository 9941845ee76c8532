"""Personal data stays out of public pages (R7.6) and out of logs, AMI traces and call events.

The one home of every masking rule:

- `mask_phone`: one phone-number field (staff screens, logs, call events): ``138****5678``.
- `mask_id_number`, `mask_name`: one ID-number or name field.
- `mask_text`: every phone and ID number inside free log text (AMI values, AGI lines, errors).
- `scrub`: free text published on the public page: numbers and names removed, not masked.

Numbers of fewer than 7 digits (110, 12345, 12388, extensions) are nobody's personal line and
stay in clear everywhere, so a number reads the same in a field and inside a log line.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

# Mainland mobile numbers, fixed lines with area code, 18-digit ID numbers, and any long digit run.
# Digit-run boundaries, not \b: Chinese characters count as word characters, so \b never
# matches between "号" and "3" and an ID number written right after its label would slip through.
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
# Written by hand a mobile is often grouped: 138-1234-5678, 138 1234 5678.
_MOBILE = re.compile(r"(?<!\d)1[3-9]\d[ \-]?\d{4}[ \-]?\d{4}(?!\d)")
_FIXED = re.compile(r"(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)")
_LONG_DIGITS = re.compile(r"(?<!\d)\d{7,}(?!\d)")
# In log text: 7+ digits, optionally after a +, but not the integer part of a decimal: Asterisk
# uniqueids and linkedids (1732547203.45) stay in clear to follow a call through the logs.
_PHONE_IN_TEXT = re.compile(r"(?<![\d.])\+?\d{7,}(?!\d|\.\d)")
_NOT_DIGIT = re.compile(r"\D")
SHORTEST_PERSONAL = 7  # digits: a local landline without its area code


def mask_phone(number: str | None) -> str:
    """13812345678 -> 138****5678, 051087654321 -> 051*****4321, 87654321 -> 87****21,
    +8613812345678 -> +861******5678; 12345 -> 12345; no digits ("<unknown>") -> "".

    Shows the digits only (separators dropped, a leading + kept), one star per hidden digit.
    """
    if not number:
        return ""
    text = str(number).strip()
    digits = _NOT_DIGIT.sub("", text)
    plus = "+" if text.startswith("+") and digits else ""
    n = len(digits)
    if n < SHORTEST_PERSONAL:
        return plus + digits
    head, tail = (3, 4) if n >= 11 else (2, 2)
    return plus + digits[:head] + "*" * (n - head - tail) + digits[-tail:]


def mask_id_number(number: str | None) -> str:
    """320282199001011234 -> 320***********1234 (the ending X of an ID number stays an X)."""
    if not number:
        return ""
    text = str(number).strip()
    if len(text) <= 7:
        return "*" * len(text)
    return text[:3] + "*" * (len(text) - 7) + text[-4:]


def mask_name(name: str | None) -> str:
    """张三丰 -> 张**: enough to recognise a case, not a person."""
    if not name:
        return ""
    return name[0] + "*" * (len(name) - 1)


def mask_text(text: str) -> str:
    """``PJSIP/13812345678@trunk`` -> ``PJSIP/138****5678@trunk``: every ID number and phone
    number in free text masked as its field would be; uniqueids and short numbers stay."""
    text = _ID_NUMBER.sub(lambda m: mask_id_number(m.group(0)), text)
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


def scrub(text: str, names: Iterable[str] = ()) -> str:
    """Remove ID numbers, phone numbers and the given personal names (the citizen's) from free
    text before it is published."""
    for name in sorted({n.strip() for n in names if n and len(n.strip()) >= 2}, key=len, reverse=True):
        text = text.replace(name, "[姓名已隐藏]")
    text = _ID_NUMBER.sub("[身份证号已隐藏]", text)
    text = _MOBILE.sub("[电话已隐藏]", text)
    text = _FIXED.sub("[电话已隐藏]", text)
    text = _LONG_DIGITS.sub("[号码已隐藏]", text)
    return text
