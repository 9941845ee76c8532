"""The FastAGI wire format, without any I/O.

Asterisk opens a TCP connection, sends a header block of ``agi_name: value``
lines ended by a blank line, then waits for one command line at a time and
answers each with a response (``200 result=...``, ``510``, ``511``, ``520``).
When the channel hangs up it may also send a bare ``HANGUP`` line (FastAGI with
``AGISIGHUP`` not set to "no").

Facts from res_agi.c that shape this module:
- commands are read into a 2048-byte buffer: a longer line is silently split
  and its tail executed as a second command, so we refuse to build one;
- arguments are split on spaces/tabs; double quotes group, a backslash makes
  the next character literal (inside quotes too); ``""`` is an empty argument;
- at most 128 argv entries (the command words count);
- the 520 usage text is sent as-is, not always newline-terminated, so the
  closing ``520 End of proper usage.`` can arrive glued to its last line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "AGIRequest",
    "parse_header_text",
    "Response",
    "HeaderError",
    "ProtocolError",
    "CommandTooLong",
    "MAX_COMMAND_BYTES",
    "parse_header_line",
    "parse_header_block",
    "parse_header_lines",
    "build_request",
    "parse_response",
    "is_usage_start",
    "is_usage_end",
    "quote_arg",
    "format_command",
    "escape_app_arg",
    "HANGUP_LINE",
]

MAX_COMMAND_BYTES = 2047  # plus "\n" = res_agi's AGI_BUF_LEN (2048)
MAX_ARGV = 127  # res_agi MAX_ARGS is 128 including the terminating NULL
HANGUP_LINE = "HANGUP"
USAGE_END = "520 End of proper usage."

_HEADER_KEY_RE = re.compile(r"agi_[A-Za-z0-9_]+\Z")
# One usual header line "agi_name: value" (no CR); findall over a whole block is one call instead of
# several string operations per line.
_HEADER_LINE_RE = re.compile(r"^(agi_[A-Za-z0-9_]+): ([^\r\n]*)$", re.M)
_STATUS_RE = re.compile(r"^(\d{3})(?:[ -](.*))?$")
_RESULT_RE = re.compile(r"^result=(\S*)\s*(.*)$")
_KV_TAIL_RE = re.compile(r"^((?:\s*[A-Za-z_]+=\S*)+)\s*$")
_PAREN_TAIL_RE = re.compile(r"^\((.*)\)((?:\s+[A-Za-z_]+=\S*)*)\s*$", re.S)
_NEEDS_QUOTES = re.compile(r'[\s"\\\0]')  # \s covers \n and \r, which then get refused
_FORBIDDEN = re.compile(r"[\n\r\0]")


class ProtocolError(Exception):
    """The peer sent something that is not FastAGI."""


class HeaderError(ProtocolError):
    """The header block is unusable. ``kind`` is a short stats key."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class CommandTooLong(ValueError):
    """A command would not fit Asterisk's 2048-byte command buffer."""


@dataclass(frozen=True)
class AGIRequest:
    """What Asterisk told us about the call in the header block.

    ``env`` holds every header exactly as sent (keys keep their ``agi_`` prefix,
    e.g. ``env["agi_callerid"]``). ``script`` is the path of the AGI URL without
    slashes or query (``agi://host/ivr/main?lang=zh`` -> ``"ivr/main"``),
    ``query`` its query arguments, ``args`` the ``agi_arg_N`` values in order.
    """

    env: dict[str, str]
    script: str
    query: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()

    def get(self, name: str, default: str | None = None) -> str | None:
        """Header by name, with or without the ``agi_`` prefix."""
        if not name.startswith("agi_"):
            name = "agi_" + name
        return self.env.get(name, default)

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def unique_id(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def caller_id(self) -> str | None:
        """Caller number, None when Asterisk says ``unknown`` or sends nothing."""
        return _known(self.env.get("agi_callerid"))

    @property
    def caller_id_name(self) -> str | None:
        return _known(self.env.get("agi_calleridname"))

    @property
    def dnid(self) -> str | None:
        return _known(self.env.get("agi_dnid"))

    @property
    def context(self) -> str:
        return self.env.get("agi_context", "")

    @property
    def extension(self) -> str:
        return self.env.get("agi_extension", "")

    @property
    def priority(self) -> str:
        return self.env.get("agi_priority", "")

    @property
    def language(self) -> str:
        return self.env.get("agi_language", "")

    @property
    def request_url(self) -> str:
        return self.env.get("agi_request", "")


def _known(value: str | None) -> str | None:
    if value is None or value == "" or value == "unknown":
        return None
    return value


def parse_header_line(line: str) -> tuple[str, str]:
    """``"agi_callerid: 138..."`` -> ``("agi_callerid", "138...")``.

    Raises HeaderError(kind="malformed_header") for anything else. A trailing CR
    is tolerated; the value is kept verbatim (it may be empty).
    """
    if line.endswith("\r"):
        line = line[:-1]
    key, sep, value = line.partition(":")
    if not sep or not _HEADER_KEY_RE.match(key) or (value and value[0] != " "):
        raise HeaderError("malformed_header", f"not an agi_ header line: {line[:80]!r}")
    return key, value[1:]


def parse_header_lines(lines: list[str]) -> dict[str, str]:
    """Header lines (no terminating blank line) -> env dict; HeaderError on a bad line."""
    env: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        # fast path for the usual "agi_name: value"; anything unusual gets the strict parser
        if sep and key.startswith("agi_") and _HEADER_KEY_RE.match(key) and not value.endswith("\r"):
            env[key] = value
        else:
            key, value = parse_header_line(line)
            env[key] = value
    return env


def parse_header_text(text: str, line_count: int) -> dict[str, str]:
    """The env dict of a header block of ``line_count`` lines (``text`` without the ending blank
    line); HeaderError on a bad line. Same result as parse_header_lines, one regex pass for the
    usual block."""
    pairs = _HEADER_LINE_RE.findall(text)
    if len(pairs) == line_count:
        return dict(pairs)
    return parse_header_lines(text.split("\n")[:line_count])  # something unusual: line by line


def build_request(env: dict[str, str], *, copy: bool = True) -> AGIRequest:
    """Derive script path, query and args from a complete header dict (``copy=False``: the request
    keeps ``env`` itself)."""
    if not env:
        raise HeaderError("malformed_header", "empty header block")
    raw_script = env.get("agi_network_script")
    request_url = env.get("agi_request", "")
    if raw_script is None:
        # Not sent when the URL has no path; fall back to the URL itself.
        parts = urlsplit(request_url)
        raw_script = parts.path + ("?" + parts.query if parts.query else "")
    path, _, query_string = raw_script.partition("?")
    if not query_string and "?" in request_url:
        query_string = request_url.split("?", 1)[1]
    query = dict(parse_qsl(query_string, keep_blank_values=True)) if query_string else {}
    args: tuple[str, ...] = ()
    if "agi_arg_1" in env:  # Asterisk numbers them from 1 on, no gaps
        numbered = [(int(key[8:]), value) for key, value in env.items()
                    if key[:8] == "agi_arg_" and key[8:].isdigit()]
        args = tuple(v for _, v in sorted(numbered))
    return AGIRequest(env=dict(env) if copy else env, script=path.strip("/"), query=query, args=args)


def parse_header_block(text: str, *, max_lines: int = 256) -> AGIRequest:
    """Parse a whole header block (lines up to the first blank line)."""
    env: dict[str, str] = {}
    count = 0
    for line in text.split("\n")[:-1]:  # the piece after the last newline is not a line
        if line in ("", "\r"):
            return build_request(env)
        count += 1
        if count > max_lines:
            raise HeaderError("too_many_header_lines", f"more than {max_lines} header lines")
        key, value = parse_header_line(line)
        env[key] = value
    raise HeaderError("client_vanished", "header block not terminated by a blank line")


@dataclass(slots=True)
class Response:
    """One AGI response.

    ``result_raw`` is the text after ``result=`` (GET DATA sends digit strings
    such as ``0123`` or an empty string, so ``result`` as int is not enough);
    ``data`` the text inside the parentheses (GET VARIABLE value, ``timeout``,
    ``dtmf``...); ``endpos`` the stream offset when sent; ``extra`` other
    ``key=value`` pairs; ``usage`` the usage text of a 520.
    """

    code: int
    result_raw: str = ""
    data: str | None = None
    endpos: int | None = None
    extra: dict[str, str] = field(default_factory=dict)
    text: str = ""
    usage: str | None = None

    @property
    def result(self) -> int | None:
        try:
            return int(self.result_raw)
        except ValueError:
            return None

    @property
    def ok(self) -> bool:
        return self.code == 200


def is_usage_start(line: str) -> bool:
    """First line of a multi-line 520 (``520-Invalid command syntax...``)."""
    return line.startswith("520-")


def is_usage_end(line: str) -> bool:
    """Last line of a multi-line 520, also when glued to the usage text."""
    return line.startswith("520 ") or line.rstrip().endswith(USAGE_END)


def parse_response(lines: list[str]) -> Response:
    """Parse one response: a single line, or the lines of a multi-line 520."""
    if not lines:
        raise ProtocolError("empty response")
    first = lines[0]
    if len(lines) == 1 and first.startswith("200 result="):
        # fast path for the usual "200 result=N" and "200 result=N endpos=M"
        parts = first[11:].split(" ")
        if len(parts) == 1 and "(" not in first and "\r" not in first:
            return Response(code=200, result_raw=parts[0], text=first)
        if len(parts) == 2 and parts[1].startswith("endpos=") and parts[1][7:].isdigit():
            return Response(code=200, result_raw=parts[0], endpos=int(parts[1][7:]), text=first)
    first = first.rstrip("\r")
    m = _STATUS_RE.match(first)
    if not m:
        raise ProtocolError(f"not an AGI response: {first[:80]!r}")
    code = int(m.group(1))
    rest = m.group(2) or ""
    text = "\n".join(line.rstrip("\r") for line in lines)
    if code == 520:
        usage = None
        if len(lines) > 1:
            body = [line.rstrip("\r") for line in lines[1:]]
            last = body[-1]
            if last.startswith("520 "):
                body = body[:-1]
            elif last.endswith(USAGE_END):
                body[-1] = last[: -len(USAGE_END)]
            usage = "\n".join(body).strip("\n")
        return Response(code=code, text=text, usage=usage)
    if code != 200:
        return Response(code=code, text=text)
    rm = _RESULT_RE.match(rest)
    if not rm:
        return Response(code=code, text=text, data=rest or None)
    result_raw, remainder = rm.group(1), rm.group(2).rstrip()
    data: str | None = None
    tail = ""
    if remainder.startswith("("):
        if remainder.endswith(")"):
            data = remainder[1:-1]
        else:
            pm = _PAREN_TAIL_RE.match(remainder)
            if pm:
                data, tail = pm.group(1), pm.group(2)
            else:
                data = remainder
    elif remainder:
        if _KV_TAIL_RE.match(remainder):
            tail = remainder
        else:
            data = remainder  # free text, e.g. "Gosub complete"
    extra: dict[str, str] = {}
    for token in tail.split():
        key, _, value = token.partition("=")
        extra[key] = value
    endpos = None
    if "endpos" in extra:
        try:
            endpos = int(extra.pop("endpos"))
        except ValueError:
            pass
    return Response(code=code, result_raw=result_raw, data=data, endpos=endpos, extra=extra, text=text)


def quote_arg(value: object) -> str:
    """Quote one argument so res_agi's parse_args gives back exactly ``str(value)``.

    Plain words go bare; empty strings and anything with whitespace, quotes or
    backslashes is double-quoted with ``\\`` and ``"`` escaped. Line breaks and
    NUL cannot travel in a command line and raise ValueError.
    """
    s = value if type(value) is str else str(value)
    if s and not _NEEDS_QUOTES.search(s):
        return s
    if _FORBIDDEN.search(s):
        raise ValueError("AGI arguments cannot contain line breaks or NUL")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_command(command: str, *args: object) -> str:
    """``format_command("SET VARIABLE", "X", "a b")`` -> ``'SET VARIABLE X "a b"'``.

    ``command`` is the bare command word(s); each arg is quoted as needed.
    Raises CommandTooLong when the line would not fit Asterisk's buffer.
    """
    if len(args) > 8:  # only a long argument list can come near Asterisk's 128 words
        words = len(command.split()) + len(args)
        if words > MAX_ARGV:
            raise CommandTooLong(f"{words} words; Asterisk takes at most {MAX_ARGV}")
    line = " ".join([command, *map(quote_arg, args)])
    if len(line) * 4 > MAX_COMMAND_BYTES:  # a UTF-8 character takes at most 4 bytes
        size = len(line.encode("utf-8", "surrogateescape"))
        if size > MAX_COMMAND_BYTES:
            raise CommandTooLong(f"command of {size} bytes; Asterisk reads at most {MAX_COMMAND_BYTES}")
    return line


def escape_app_arg(value: object) -> str:
    """Escape one dialplan-application argument for EXEC.

    Applications split their data on commas with Asterisk's standard argument
    parser, which also honours quotes and parentheses; a backslash makes the next
    character literal and is removed. Escaping ``\\ , " ( )`` makes the
    application receive the value unchanged.
    """
    return re.sub(r'([\\,"()])', r"\\\1", str(value))
