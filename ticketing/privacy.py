"""Personal data stays out of public pages and logs (R7.6)."""
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


def mask_phone(number: str | None) -> str:
    """13812345678 -> 138****5678; short numbers keep only their last two digits."""
    if not number:
        return ""
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) >= 7:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) > 2:
        return "*" * (len(digits) - 2) + digits[-2:]
    return "*" * len(digits)


def mask_name(name: str | None) -> str:
    """张三丰 -> 张**: enough to recognise a case, not a person."""
    if not name:
        return ""
    return name[0] + "*" * (len(name) - 1)


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
