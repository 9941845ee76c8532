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
# uniqueids and linkedids (1732547203.45) stay in clear to follow a call through the logs. Nor a
# case number (ticketing/numbering.py, 20261125-000123): no one's phone, shown on the public page
# anyway, and a log line must lead to its case.
_CASE_OR_PHONE_IN_TEXT = re.compile(r"(?<![\d.])(?:(?P<case>(?:19|20)\d{6}-\d{6})(?!\d)|\+?\d{7,}(?!\d|\.\d))")
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
    number in free text masked as its field would be; uniqueids, case numbers and short numbers stay."""
    text = _ID_NUMBER.sub(lambda m: mask_id_number(m.group(0)), text)
    return _CASE_OR_PHONE_IN_TEXT.sub(lambda m: m.group(0) if m.group("case") else mask_phone(m.group(0)), text)


# -- personal data in text to be published (R7.6) ------------------------------------------------

# Digits as people write them: ASCII, full-width, and Chinese numerals (幺 and 两 read out in numbers).
_DIGIT_CHARS = "0123456789０１２３４５６７８９零〇一二三四五六七八九幺两"
_DIGIT_VALUE = {**{c: str(i) for i, c in enumerate("0123456789")},
                **{c: str(i) for i, c in enumerate("０１２３４５６７８９")},
                **dict(zip("零〇一二三四五六七八九幺两", "001234567891" "2"))}
_SEPARATORS = r" \t\-—－–.·．/()（）"
_NUMBER_RUN = re.compile(rf"[+＋]?[{_DIGIT_CHARS}](?:[{_SEPARATORS}]{{0,2}}[{_DIGIT_CHARS}Xx])+")
# Not personal: a date, a time, a case number (shown on the public page anyway), an amount or a size.
_NOT_PERSONAL_NUMBER = re.compile(
    r"^(\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{8}-\d{6}|\d{1,2}[:：]\d{2}(:\d{2})?)$")
_UNIT_AFTER = re.compile(r"^\s*(元|万|亿|平方米|平米|米|公里|吨|户|人|个|次|年|月|日|号线|路公交)")
_MOBILE_OR_ID_DIGITS = re.compile(r"^(1[3-9]\d{9}|\d{17}[\dX])$")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_PLACE_NUMBER = r"\s*[0-9０-９一二三四五六七八九十百]+\s*"
_ADDRESS = re.compile(
    rf"[\u4e00-\u9fa5A-Za-z0-9]{{0,12}}(?:路|街|巷|弄|大道|胡同|道){_PLACE_NUMBER}号"
    rf"(?:{_PLACE_NUMBER}(?:幢|栋|号楼|单元|室|层|楼|号))*"
    rf"|[\u4e00-\u9fa5]{{2,12}}(?:小区|花园|新村|公寓|大厦|家园|苑|村){_PLACE_NUMBER}(?:幢|栋|号楼|组|号)"
    rf"(?:{_PLACE_NUMBER}(?:单元|室|层|楼|号))*"
    rf"|{_PLACE_NUMBER}(?:幢|栋|号楼){_PLACE_NUMBER}(?:单元|室)(?:{_PLACE_NUMBER}(?:室|号))?")
# The most common surnames (the 100 most frequent cover ~85 % of people).
_SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏"
             "魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚"
             "邵万钱严覃武戴莫孔向汤")
_HONORIFIC = re.compile(rf"[{_SURNAMES}](?:先生|女士|小姐|师傅|阿姨|大爷|大妈|大姐|老师|医生|经理|老板|科长|主任|"
                        rf"书记|村长|站长|所长|队长)")
_LABELLED_NAME = re.compile(r"(?:姓名|联系人|来电人|投诉人|举报人|反映人|户主|业主|当事人|名叫|叫做|名为)"
                            r"(?:[:：是为]\s*)?([\u4e00-\u9fa5]{2,3})")
_RELATED_NAME = re.compile(rf"(?:邻居|丈夫|妻子|老公|老婆|儿子|女儿|父亲|母亲|同事|房东|租户|老板|经理|员工|"
                           rf"科长|主任|队长|村长|书记|网格员|保安|物业经理)\s*([{_SURNAMES}][\u4e00-\u9fa5]{{1,2}})")
_NAME_STOP = set("的了在是和与说把被对向跟给到从打让叫")  # a name does not run on into these

_PLACEHOLDER = re.compile(r"\[[^\[\]]{1,6}已隐藏\]")

LABELS = {"phone": "电话", "id_number": "身份证号", "number": "号码", "email": "邮箱", "address": "地址",
          "name": "姓名"}


def _digits_of(run: str) -> str:
    return "".join(_DIGIT_VALUE[c] for c in run if c in _DIGIT_VALUE) + ("X" if run[-1:] in "Xx" else "")


def _trim_name(name: str) -> str:
    for i, ch in enumerate(name):
        if ch in _NAME_STOP and i >= 2:
            return name[:i]
    return name


def find_personal_data(text: str, *, names: Iterable[str] = (), location: str = "") -> list[tuple[int, int, str]]:
    """Where `text` holds personal data, as (start, end, kind) spans without overlaps, in order:
    phone and ID numbers however written (separators, full-width digits, Chinese numerals), other
    long numbers, e-mail addresses, house-number addresses and the case's own `location`, the
    citizen's `names` and their surname with a form of address (王先生), names after a label (姓名：)
    or a relation (邻居张某某), surname + honorific (李老师). Dates, times, amounts and case numbers
    are not personal."""
    # what an earlier redaction put in ("[姓名已隐藏]") is not a label to find a name after
    text = _PLACEHOLDER.sub(lambda m: "□" * len(m.group(0)), text)
    spans: list[tuple[int, int, str]] = []
    for m in _NUMBER_RUN.finditer(text):
        raw = m.group(0)
        digits = _digits_of(raw)
        core = digits.rstrip("X")
        if len(core) < SHORTEST_PERSONAL or _NOT_PERSONAL_NUMBER.match(raw.strip()):
            continue
        # a count (300人) is not personal, but a mobile or ID number stays one whatever follows it
        if _UNIT_AFTER.match(text[m.end():]) and not _MOBILE_OR_ID_DIGITS.match(digits):
            continue
        if len(digits) in (15, 18) and (len(core) == len(digits) or len(core) == 17):
            kind = "id_number"
        elif len(core) <= 13:
            kind = "phone"
        else:
            kind = "number"
        spans.append((m.start(), m.end(), kind))
    spans += [(m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]
    spans += [(m.start(), m.end(), "address") for m in _ADDRESS.finditer(text)]
    place = (location or "").strip()
    # the case's own place is personal when it points at a door (a number, a house-number address);
    # a street or a sub-district alone (宜城街道) is where the problem is, not who reported it
    if len(place) >= 4 and (_ADDRESS.search(place) or any(ch in _DIGIT_VALUE for ch in place)):
        spans += [(m.start(), m.end(), "address") for m in re.finditer(re.escape(place), text)]
    for name in {n.strip() for n in names if n and len(n.strip()) >= 2}:
        spans += [(m.start(), m.end(), "name") for m in re.finditer(re.escape(name), text)]
        spans += [(m.start(), m.end(), "name")
                  for m in re.finditer(re.escape(name[0]) + "(?:先生|女士|小姐|师傅|阿姨|大爷|大妈|大姐)", text)]
    spans += [(m.start(), m.end(), "name") for m in _HONORIFIC.finditer(text)]
    for pattern in (_LABELLED_NAME, _RELATED_NAME):
        for m in pattern.finditer(text):
            name = _trim_name(m.group(1))
            spans.append((m.start(1), m.start(1) + len(name), "name"))
    # overlapping finds: the earliest, then the longest, wins
    out: list[tuple[int, int, str]] = []
    for start, end, kind in sorted(spans, key=lambda sp: (sp[0], -(sp[1] - sp[0]))):
        if out and start < out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end, out[-1][2])
            continue
        out.append((start, end, kind))
    return out


def scrub(text: str, names: Iterable[str] = (), location: str = "") -> str:
    """`text` with every find of `find_personal_data` replaced by what it was ([电话已隐藏] ...)."""
    parts, at = [], 0
    for start, end, kind in find_personal_data(text, names=names, location=location):
        parts += [text[at:start], f"[{LABELS[kind]}已隐藏]"]
        at = end
    parts.append(text[at:])
    return "".join(parts)
