"""The AMI wire format: an incremental parser for what Asterisk sends and a serializer for actions.

What Asterisk 22 sends on a manager connection:

- one banner line, ``Asterisk Call Manager/x.y.z`` + CRLF, with no blank line after it;
- then messages, each a run of ``Key: Value`` lines ended by an empty line, CRLF line ends.

A key may repeat within one message (``Output:`` lines of ``Command`` on Asterisk 22, ``ChanVariable``,
``Variable``), so a message keeps every value in order. Lines without a colon are not valid AMI, but
old ``Response: Follows`` bodies and misbehaving modules produce them; they are kept aside in
``Message.unparsed`` instead of breaking the stream.

Nothing here does I/O; the client's link (``callcenter.ami.connection``) feeds bytes in and writes bytes out.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from callcenter.ami.errors import ActionEncodingError, AMIProtocolError
from ticketing.privacy import mask_text

BANNER_PREFIX = "Asterisk Call Manager/"
EOL = b"\r\n"

# A message larger than this is not AMI talking; refuse to buffer without bound.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

# Header names Asterisk accepts are plain tokens; anything else in a key is a caller bug
# (or an injection attempt), so it is refused rather than written.
_KEY_RE = re.compile(r"^[A-Za-z0-9_()\-.]+$")

# Values never logged in clear.
SECRET_KEYS = frozenset({"secret", "key"})
# Identifiers needed in clear to reconcile and follow calls; never phone numbers (do not put one there).
ID_KEYS = frozenset({"actionid", "channelid", "otherchannelid", "uniqueid", "linkedid", "destuniqueid"})

_SUCCESS_RESPONSES = frozenset({"success", "follows", "goodbye"})


def _index_of(items: Iterable[tuple[str, str]]) -> dict[str, str | list[str]]:
    index: dict[str, str | list[str]] = {}
    for key, value in items:
        low = key.lower()
        old = index.get(low)
        if old is None:
            index[low] = value
        elif type(old) is list:
            old.append(value)
        else:
            index[low] = [old, value]
    return index


class Message:
    """One AMI message (a response or an event), header order and repeated keys preserved.

    Keys are matched case-insensitively, as Asterisk does. ``get(key)`` gives a ``str`` for a key seen
    once and a ``list[str]`` for a key that repeats; ``get_all(key)`` always gives a list.
    """

    # Storage chosen for the garbage collector. Under an event burst the app may keep many messages,
    # and every surviving GC-tracked object makes collections more frequent and longer (measured: a
    # tuple per header cost a third of the client's CPU in GC). So a parsed message keeps its text
    # (a str) and a dict of str values (both untracked by CPython); only repeated keys get a list,
    # and the ordered (key, value) pairs are rebuilt from the text when someone asks for them.
    __slots__ = ("_text", "_pairs", "_index", "unparsed")

    def __init__(self, items: Iterable[tuple[str, str]] = (), unparsed: Iterable[str] = ()) -> None:
        pairs = tuple((str(k), str(v)) for k, v in items)
        self._text: str | None = None
        self._pairs: tuple[tuple[str, str], ...] | None = pairs
        self._index: dict[str, str | list[str]] = _index_of(pairs)
        self.unparsed: tuple[str, ...] = tuple(unparsed)

    @classmethod
    def _parsed(cls, text: str, index: dict[str, str | list[str]], unparsed: tuple[str, ...]) -> Message:
        msg = cls.__new__(cls)
        msg._text = text
        msg._pairs = None
        msg._index = index
        msg.unparsed = unparsed
        return msg

    @property
    def _items(self) -> tuple[tuple[str, str], ...]:
        if self._pairs is None:
            self._pairs = tuple(pair for pair, _ in _split_lines(self._text or "") if pair is not None)
        return self._pairs

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Message:
        """Build a message from a dict; list values become repeated keys (handy in tests and fakes)."""
        pairs: list[tuple[str, str]] = []
        for key, value in data.items():
            if isinstance(value, (list, tuple)):
                pairs.extend((key, str(item)) for item in value)
            elif value is not None:
                pairs.append((key, str(value)))
        return cls(pairs)

    # -- access -------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> str | list[str] | Any:
        value = self._index.get(key.lower())
        if value is None:
            return default
        if type(value) is list:
            return list(value)
        return value

    def get_all(self, key: str) -> list[str]:
        value = self._index.get(key.lower())
        if value is None:
            return []
        if type(value) is list:
            return list(value)
        return [value]

    def get_first(self, key: str, default: str | None = None) -> str | None:
        value = self._index.get(key.lower())
        if value is None:
            return default
        if type(value) is list:
            return value[0]
        return value

    def __getitem__(self, key: str) -> str | list[str]:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for key, _ in self._items:
            seen.setdefault(key, None)
        return list(seen)

    def as_dict(self) -> dict[str, str | list[str]]:
        """Original key spelling; repeated keys as lists."""
        out: dict[str, str | list[str]] = {}
        for key in self.keys():
            out[key] = self.get(key)
        return out

    # -- meaning ------------------------------------------------------------------------------
    @property
    def is_event(self) -> bool:
        # OriginateResponse is an event that also carries a ``Response:`` header, so "Event" wins.
        return "event" in self._index

    @property
    def is_response(self) -> bool:
        return not self.is_event and "response" in self._index

    @property
    def name(self) -> str | None:
        """The event name (``Newchannel``), or None for a response."""
        return self.get_first("Event")

    @property
    def response(self) -> str | None:
        """``Success``/``Error``/``Follows``/``Goodbye``; OriginateResponse events carry one too."""
        return self.get_first("Response")

    @property
    def action_id(self) -> str | None:
        return self.get_first("ActionID")

    @property
    def success(self) -> bool:
        value = self.get_first("Response")
        return value is not None and value.lower() in _SUCCESS_RESPONSES

    @property
    def event_list(self) -> str | None:
        """``start``/``Complete`` markers of an event-list action, lower-cased, else None."""
        value = self.get_first("EventList")
        return value.lower() if value else None

    def chan_variables(self) -> dict[str, str]:
        """``ChanVariable: NAME=value`` lines (manager.conf ``channelvars``) as a dict."""
        out: dict[str, str] = {}
        for item in self.get_all("ChanVariable"):
            name, _, value = item.partition("=")
            out[name] = value
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._items == other._items and self.unparsed == other.unparsed

    def __repr__(self) -> str:
        # Repr ends up in logs and assertion output: hide secrets, mask phone numbers.
        shown = []
        for key, value in self._items:
            if key.lower() in SECRET_KEYS:
                value = "***"
            elif key.lower() not in ID_KEYS:
                value = mask_text(value)
            shown.append(f"{key}={value!r}")
        return f"<Message {' '.join(shown)}>"


# End of a message: a line end followed by an empty (or blank) line.
_MESSAGE_END = re.compile(rb"\r?\n[ \t]*\r?\n")


class Parser:
    """Incremental AMI stream parser: ``feed(bytes) -> list[Message]``.

    Bytes may arrive cut anywhere (inside a CRLF, inside a UTF-8 character, inside a key); a message
    is decoded only once it is complete. Bare LF line ends are accepted too. Works on whole messages
    rather than line by line: Asterisk bursts thousands of events a second and this is the client's
    hot path (see docs/benchmarks.md, "AMI event ingest").
    """

    def __init__(self, *, expect_banner: bool = True, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._scan_from = 0
        self._expect_banner = expect_banner
        self._max_message_bytes = max_message_bytes
        self.banner: str | None = None
        self.garbage_lines = 0

    @property
    def banner_checked(self) -> bool:
        """True once the first line was read (and taken as banner if it was one)."""
        return not self._expect_banner

    @property
    def version(self) -> str | None:
        """AMI protocol version from the banner (``9.0.0``-like), once seen."""
        if self.banner is None:
            return None
        return self.banner[len(BANNER_PREFIX):].strip() or None

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buffer
        buf += data
        if self._expect_banner:
            end = buf.find(b"\n")
            if end < 0:
                self._check_size()
                return []
            self._expect_banner = False
            first = bytes(buf[:end]).rstrip(b"\r").decode("utf-8", errors="replace")
            if first.startswith(BANNER_PREFIX):
                self.banner = first
                del buf[:end + 1]
        messages: list[Message] = []
        start = 0
        pos = self._scan_from
        while True:
            match = _MESSAGE_END.search(buf, pos)
            if match is None:
                break
            block = bytes(buf[start:match.start()])
            start = pos = match.end()
            if block.strip():
                messages.append(self._message(block))
        if start:
            del buf[:start]
        # Resume the search a few bytes back: a terminator may straddle this read and the next.
        self._scan_from = max(0, len(buf) - 4)
        self._check_size()
        return messages

    def _check_size(self) -> None:
        if len(self._buffer) > self._max_message_bytes:
            raise AMIProtocolError(
                f"AMI message larger than {self._max_message_bytes} bytes without an end; not an AMI peer?"
            )

    def _message(self, block: bytes) -> Message:
        text = block.decode("utf-8", errors="replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        index: dict[str, str | list[str]] = {}
        unparsed: list[str] = []
        for line in text.split("\n"):
            key, sep, value = line.partition(":")
            if sep and key and key[0] not in " \t" and key[-1] not in " \t":
                if value[:1] == " ":
                    value = value[1:]
                low = key.lower()
                old = index.get(low)
                if old is None:
                    index[low] = value
                elif type(old) is list:
                    old.append(value)
                else:
                    index[low] = [old, value]
            elif line.strip():
                # Not a header line. Keep it with the message rather than dropping data silently.
                self.garbage_lines += 1
                unparsed.append(line)
        return Message._parsed(text, index, tuple(unparsed) if unparsed else ())


def _split_lines(text: str) -> Iterator[tuple[tuple[str, str] | None, str]]:
    """Header pairs of a message's text, with the same rules as ``Parser._message`` (None: not a header)."""
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        if sep and key and key[0] not in " \t" and key[-1] not in " \t":
            if value[:1] == " ":
                value = value[1:]
            yield (key, value), line
        else:
            yield None, line


def _value_lines(action_name: str, key: str, value: Any) -> Iterator[str]:
    if value is None:
        return
    if isinstance(value, bool):
        values: list[Any] = ["true" if value else "false"]
    elif isinstance(value, Mapping):
        # Variable: {"A": "1", "B": "2"} -> one "Variable: A=1" line per entry.
        values = []
        for var_name, var_value in value.items():
            var_name = str(var_name)
            if not var_name or "=" in var_name or _has_break(var_name):
                raise ActionEncodingError(
                    f"AMI action {action_name!r}: variable name {var_name!r} in {key!r} is empty, "
                    "contains '=' or a line break"
                )
            values.append(f"{var_name}={'' if var_value is None else var_value}")
    elif isinstance(value, (list, tuple)):
        values = list(value)
    else:
        values = [value]
    for item in values:
        if isinstance(item, bool):
            text = "true" if item else "false"
        else:
            text = str(item)
        if _has_break(text):
            # The value itself is not echoed: it may be a secret, and it is attacker-controlled.
            raise ActionEncodingError(
                f"AMI action {action_name!r}: value of {key!r} contains a line break (CR, LF or NUL); "
                "refusing to send it because it would inject extra AMI headers or actions"
            )
        yield f"{key}: {text}"


def _has_break(text: str) -> bool:
    return "\r" in text or "\n" in text or "\0" in text


def action_name_of(action: Mapping[str, Any]) -> str:
    for key, value in action.items():
        if key.lower() == "action":
            return str(value)
    raise ActionEncodingError("AMI action has no 'Action' key")


def encode_action(action: Mapping[str, Any]) -> bytes:
    """Serialize an action dict to wire bytes: ``Action`` first, CRLF lines, blank line at the end.

    Values may be str/int/float/bool, a list (one line per item, e.g. several ``Variable:``) or, for
    ``Variable``, a dict (``NAME=value`` per entry). ``None`` values are left out. A key or value with
    CR/LF/NUL raises ``ActionEncodingError`` (a ``ValueError``): it would let data chosen by a caller
    or a citizen inject headers or whole actions.
    """
    name = action_name_of(action)
    lines: list[str] = []
    seen: set[str] = set()
    for key, value in action.items():
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ActionEncodingError(f"AMI action {name!r}: invalid header name {key!r}")
        low = key.lower()
        if low in seen:
            raise ActionEncodingError(f"AMI action {name!r}: header {key!r} given twice (case-insensitive)")
        seen.add(low)
        if low == "action":
            continue
        lines.extend(_value_lines(name, key, value))
    first = next(_value_lines(name, "Action", name), None)
    if first is None or not name:
        raise ActionEncodingError("AMI action name is empty")
    return ("\r\n".join([first, *lines]) + "\r\n\r\n").encode("utf-8")


def redacted(action: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an action fit for logs and exceptions: secrets hidden, phone numbers masked."""
    out: dict[str, Any] = {}
    for key, value in action.items():
        if str(key).lower() in SECRET_KEYS:
            out[key] = "***"
        elif str(key).lower() in ID_KEYS and value is not None:
            out[key] = str(value)
        elif isinstance(value, Mapping):
            out[key] = {k: mask_text(str(v)) for k, v in value.items()}
        elif isinstance(value, (list, tuple)):
            out[key] = [mask_text(str(v)) for v in value]
        elif value is None:
            continue
        else:
            out[key] = mask_text(str(value))
    return out
