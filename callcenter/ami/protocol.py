"""The AMI wire format: an incremental parser for what Asterisk sends and a serializer for actions.

What Asterisk 22 sends on a manager connection:

- one banner line, ``Asterisk Call Manager/x.y.z`` + CRLF, with no blank line after it;
- then messages, each a run of ``Key: Value`` lines ended by an empty line, CRLF line ends.

A key may repeat within one message (``Output:`` lines of ``Command`` on Asterisk 22, ``ChanVariable``,
``Variable``), so a message keeps every value in order. Lines without a colon are not valid AMI, but
old ``Response: Follows`` bodies and misbehaving modules produce them; they are kept aside in
``Message.unparsed`` instead of breaking the stream.

Nothing here does I/O; the client (``callcenter.ami.client``) feeds bytes in and writes bytes out.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from callcenter.ami.errors import ActionEncodingError, AMIProtocolError
from callcenter.ami.redact import mask_phone_numbers

BANNER_PREFIX = "Asterisk Call Manager/"
EOL = b"\r\n"

# A message larger than this is not AMI talking; refuse to buffer without bound.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

# Header names Asterisk accepts are plain tokens; anything else in a key is a caller bug
# (or an injection attempt), so it is refused rather than written.
_KEY_RE = re.compile(r"^[A-Za-z0-9_()\-.]+$")

# Values never logged in clear.
SECRET_KEYS = frozenset({"secret", "key"})

_SUCCESS_RESPONSES = frozenset({"success", "follows", "goodbye"})


class Message:
    """One AMI message (a response or an event), header order and repeated keys preserved.

    Keys are matched case-insensitively, as Asterisk does. ``get(key)`` gives a ``str`` for a key seen
    once and a ``list[str]`` for a key that repeats; ``get_all(key)`` always gives a list.
    """

    __slots__ = ("_items", "_index", "unparsed")

    def __init__(self, items: Iterable[tuple[str, str]] = (), unparsed: Iterable[str] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        self.unparsed: list[str] = list(unparsed)
        for key, value in items:
            self._add(key, value)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Message:
        """Build a message from a dict; list values become repeated keys (handy in tests and fakes)."""
        msg = cls()
        for key, value in data.items():
            if isinstance(value, (list, tuple)):
                for item in value:
                    msg._add(key, str(item))
            elif value is not None:
                msg._add(key, str(value))
        return msg

    def _add(self, key: str, value: str) -> None:
        self._items.append((key, value))
        self._index.setdefault(key.lower(), []).append(value)

    # -- access -------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> str | list[str] | Any:
        values = self._index.get(key.lower())
        if not values:
            return default
        if len(values) == 1:
            return values[0]
        return list(values)

    def get_all(self, key: str) -> list[str]:
        return list(self._index.get(key.lower(), ()))

    def get_first(self, key: str, default: str | None = None) -> str | None:
        values = self._index.get(key.lower())
        return values[0] if values else default

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
            shown.append(f"{key}={mask_phone_numbers(value)!r}")
        return f"<Message {' '.join(shown)}>"


class Parser:
    """Incremental AMI stream parser: ``feed(bytes) -> list[Message]``.

    Bytes may arrive cut anywhere (inside a CRLF, inside a UTF-8 character, inside a key); only whole
    lines are decoded. Bare LF line ends are accepted too.
    """

    def __init__(self, *, expect_banner: bool = True, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._expect_banner = expect_banner
        self._max_message_bytes = max_message_bytes
        self._items: list[tuple[str, str]] = []
        self._unparsed: list[str] = []
        self._message_bytes = 0
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
        self._buffer += data
        messages: list[Message] = []
        start = 0
        buf = self._buffer
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            raw = bytes(buf[start:end])
            start = end + 1
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            msg = self._line(raw)
            if msg is not None:
                messages.append(msg)
        del buf[:start]
        if len(buf) + self._message_bytes > self._max_message_bytes:
            raise AMIProtocolError(
                f"AMI message larger than {self._max_message_bytes} bytes without an end; not an AMI peer?"
            )
        return messages

    def _line(self, raw: bytes) -> Message | None:
        line = raw.decode("utf-8", errors="replace")
        if self._expect_banner:
            self._expect_banner = False
            if line.startswith(BANNER_PREFIX):
                self.banner = line
                return None
        if not line.strip():
            if not self._items and not self._unparsed:
                return None  # stray blank line between messages
            msg = Message(self._items, self._unparsed)
            self._items = []
            self._unparsed = []
            self._message_bytes = 0
            return msg
        self._message_bytes += len(raw) + 2
        key, sep, value = line.partition(":")
        if not sep or not key or key != key.strip():
            # Not a header line. Keep it with the message rather than dropping data silently.
            self.garbage_lines += 1
            self._unparsed.append(line)
            return None
        if value.startswith(" "):
            value = value[1:]
        self._items.append((key, value))
        return None


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
        elif isinstance(value, Mapping):
            out[key] = {k: mask_phone_numbers(str(v)) for k, v in value.items()}
        elif isinstance(value, (list, tuple)):
            out[key] = [mask_phone_numbers(str(v)) for v in value]
        elif value is None:
            continue
        else:
            out[key] = mask_phone_numbers(str(value))
    return out
