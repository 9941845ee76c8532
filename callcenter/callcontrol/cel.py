"""The call log (A2) from Asterisk's Channel Event Logging, live and after an outage.

Why CEL, and why a file next to the AMI events (measured on Asterisk 22.10.1, docs/call-control.md):
- ``cel_manager`` sends every CEL record as an AMI ``CEL`` event: that feeds the log live. But an AMI
  client that is disconnected simply misses events; Asterisk keeps no backlog for it.
- ``cel_custom`` (with ``res_cdrel_custom``, Asterisk 22's "advanced" DSV mapping) appends the same
  records to ``/var/log/asterisk/callcenter-cel.csv`` inside the root. It is written whether or not
  we are connected, so after every reconnect the link reads what was added since and fills the gap.
  The mapping (asterisk/cel_custom.conf) writes no caller-id fields.
- The CDR backends give one summary per call, not the legs/bridges/transfers A2 asks for.

The same CEL record may thus reach us twice (live and from the file). Both carry the record's event
time: AMI as ``YYYY-MM-DD HH:MM:SS`` (cel_manager ignores cel.conf's dateformat), the file with
microseconds (our dateformat). The dedup key uses uniqueid, event type, the time to the second and
the bridge id (a channel can enter two bridges within one second), so either copy lands once.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callcenter.pbx.names import operator_of_channel
from ticketing import calls
from ticketing.models import Call, User
from ticketing.privacy import mask_text

log = logging.getLogger("callcenter.callcontrol.cel")

CEL_FILE = "/var/log/asterisk/callcenter-cel.csv"  # inside the Asterisk root (asterisk/cel_custom.conf)
CEL_FIELDS = ("eventtype", "eventtime", "uniqueid", "linkedid", "channame", "appname", "extra")

# CEL event -> call-log kind. CHAN_END and LOCAL_OPTIMIZE add nothing a reader of the log needs.
CEL_KINDS = {
    "CHAN_START": "leg_start",
    "ANSWER": "leg_answer",
    "BRIDGE_ENTER": "bridge_enter",
    "BRIDGE_EXIT": "bridge_exit",
    "HANGUP": "leg_end",
    "BLINDTRANSFER": "transfer_blind",
    "ATTENDEDTRANSFER": "transfer_attended",
    "LINKEDID_END": "call_end",
}


def parse_ami_time(stamp: str | None) -> datetime:
    """An AMI ``Timestamp`` header (epoch seconds with microseconds); now if absent."""
    try:
        return datetime.fromtimestamp(float(stamp), UTC) if stamp else datetime.now(UTC)
    except ValueError:
        return datetime.now(UTC)


def parse_cel_time(text: str) -> datetime | None:
    """CEL event time: ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (UTC: the root's zone) or epoch seconds."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


@dataclass
class LogEntry:
    """One call-log row to write: ``linkedid`` finds the call, ``dedup_key`` makes it exactly-once."""

    linkedid: str
    uniqueid: str
    kind: str
    at: datetime
    dedup_key: str
    data: dict[str, Any] = field(default_factory=dict)
    create_call: bool = False  # open the call's row if the IVR did not (e.g. FastAGI was down)
    final: bool = False  # the last record of this call (LINKEDID_END)
    only_if_new: bool = False  # a fact seen only after an outage (resync): logged only for a call with no row yet


def cel_entry(fields: dict[str, str], *, at_override: datetime | None = None) -> LogEntry | None:
    """A CEL record (from AMI or the file, as a CEL_FIELDS dict) -> call-log entry, or None if not logged."""
    event = (fields.get("eventtype") or "").upper()
    kind = CEL_KINDS.get(event)
    uid = fields.get("uniqueid") or ""
    if kind is None or not uid:
        return None
    at = parse_cel_time(fields.get("eventtime") or "")
    if at is None:
        return None
    try:
        extra = json.loads(fields.get("extra") or "{}") or {}
    except ValueError:
        extra = {}
    if not isinstance(extra, dict):
        extra = {}
    channel = fields.get("channame") or ""
    data: dict[str, Any] = {"channel": mask_text(channel), "operator": operator_of_channel(channel)}
    if fields.get("appname"):
        data["app"] = fields["appname"]
    bridge = str(extra.get("bridge_id") or "")
    if bridge:
        data["bridge_id"] = bridge
        if extra.get("bridge_technology"):
            data["bridge_technology"] = extra["bridge_technology"]
    if event == "HANGUP":
        data["cause"] = extra.get("hangupcause")
        if extra.get("dialstatus"):
            data["dialstatus"] = extra["dialstatus"]
    if event in ("BLINDTRANSFER", "ATTENDEDTRANSFER"):
        # channel names and the dialled extension only: no caller ids are in these records
        data["transfer"] = {k: mask_text(str(v)) for k, v in extra.items()
                            if k in ("extension", "context", "bridge1_id", "bridge2_id", "channel2_name",
                                     "transferee_channel_name", "transfer_target_channel_name", "transferee")}
    second = at.strftime("%Y-%m-%dT%H:%M:%S")
    return LogEntry(linkedid=fields.get("linkedid") or uid, uniqueid=uid, kind=kind,
                    at=at_override or at, dedup_key=f"cel:{uid}:{event}:{second}:{bridge}", data=data,
                    final=event == "LINKEDID_END")


# -------------------------------------------------------------------------------------------
# writing


@dataclass
class WriteResult:
    written: int = 0
    duplicates: int = 0
    unmatched: list[LogEntry] = field(default_factory=list)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class CallLogWriter:
    """Writes entries on the call they belong to (synchronous: run it in a thread)."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    def _calls_for(self, session: Session, entries: list[LogEntry]) -> dict[str, Call]:
        """linkedid -> the call it belongs to (its first row), for a whole batch in a few queries."""
        linked = sorted({e.linkedid for e in entries})
        found: dict[str, Call] = {}
        for i in range(0, len(linked), 500):
            part = linked[i:i + 500]
            rows = session.execute(select(Call).where(Call.linkedid.in_(part)).order_by(Call.id)).scalars().all()
            for call in rows:
                found.setdefault(call.linkedid, call)
            missing = [lid for lid in part if lid not in found]
            if missing:  # a row written with its own uniqueid as linkedid
                for call in session.execute(select(Call).where(Call.uniqueid.in_(missing))).scalars().all():
                    found.setdefault(call.uniqueid, call)
        return found

    def write(self, entries: Iterable[LogEntry]) -> WriteResult:
        result = WriteResult()
        entries = list(entries)
        with self.session_factory() as session:
            by_linkedid = self._calls_for(session, entries)
            for entry in entries:
                call = by_linkedid.get(entry.linkedid)
                if call is not None and entry.only_if_new:
                    result.duplicates += 1
                    continue
                if call is None and entry.create_call:
                    call = session.execute(select(Call).where(Call.uniqueid == entry.uniqueid)).scalar_one_or_none()
                    if call is None:
                        call = calls.call_row(session, uniqueid=entry.uniqueid, linkedid=entry.linkedid,
                                              caller_number=str(entry.data.get("caller_number") or ""),
                                              started_at=entry.at)
                        if entry.kind == "queued":
                            calls.queued_by_operator_channel(call, str(entry.data.get("reason") or "operator"))
                    by_linkedid[entry.linkedid] = call
                if call is None:
                    result.unmatched.append(entry)
                    continue
                data = {k: v for k, v in entry.data.items() if k != "caller_number"}
                data["uniqueid"] = entry.uniqueid
                if not calls.add_event(session, call.id, kind=entry.kind, at=entry.at, dedup_key=entry.dedup_key,
                                       data=data):
                    result.duplicates += 1
                    continue
                result.written += 1
                self._update_call(session, call, entry)
            session.commit()
        return result

    def _update_call(self, session: Session, call: Call, entry: LogEntry) -> None:
        apply_logged(session, call, entry.kind, at=entry.at, uniqueid=entry.uniqueid,
                     operator=entry.data.get("operator"))


def apply_logged(session: Session, call: Call, kind: str, *, at: datetime, uniqueid: str,
                 operator: str | None = None) -> None:
    """A logged event on the call record (ticketing.calls.apply_event), the answering operator's
    account found by their extension; for every driver (the Twilio queue: callcenter/twilio/agents.py).
    An operator's leg entering the call's bridge (bridge_enter) answers it as operator_connected does."""
    operator_id = None
    if kind in ("operator_connected", "bridge_enter") and call.operator_id is None and operator:
        operator_id = session.execute(
            select(User.id).where(User.operator_extension == operator, User.active.is_(True))
            .order_by(User.id).limit(1)).scalar_one_or_none()
    calls.apply_event(call, kind, at=at, uniqueid=uniqueid, operator_id=operator_id, operator_leg=bool(operator))


# -------------------------------------------------------------------------------------------
# reading the file


class CelSource(Protocol):
    def read_new(self, since: float | None) -> list[dict[str, str]]:
        """CEL records added since the last call (the first call: those after ``since`` epoch s)."""


class CelFile:
    """Incremental reader of the CEL DSV file, and its rotation. Remembers the file (inode) and how far
    it read; a truncated file (copy-truncate) is read again from the start (the call log's dedup keys
    make re-reading harmless).

    The first read of a process looks back at most ``backlog_bytes`` from the end and
    ``backlog_seconds`` in time: under load Asterisk writes ~15,000 records a minute, and what a
    process missed before it started is bounded by that window (documented in docs/call-control.md).

    Rotation, so the file does not grow forever without losing what the gap-filler still needs: once
    the reader has consumed ``rotate_bytes`` of the current file it renames it to ``<name>.1`` (older
    ones shift to ``.2`` … ``.<keep>``, the oldest is deleted). Asterisk opens the file for every
    record (measured: no descriptor held), so the next record starts a new file. Records appended
    between the last read and the rename are in ``.1``: the next read finds the file it was reading
    by its inode among the generations and finishes it before going on with the newer ones. The
    link marks as consumed, while it stays connected, what was written a minute or more before
    (those records came live over AMI): ``mark()`` / ``advance()``.
    """

    def __init__(self, path: str | Path, *, backlog_seconds: float = 900, backlog_bytes: int = 8 << 20,
                 rotate_bytes: int | None = 64 << 20, keep: int = 2) -> None:
        self.path = Path(path)
        self.backlog_seconds = backlog_seconds
        self.backlog_bytes = backlog_bytes
        self.rotate_bytes = rotate_bytes
        self.keep = max(1, keep)
        self.rotations = 0
        self._offset: int | None = None  # None: nothing read yet in this process
        self._inode: int | None = None  # the file the offset is in (None: the next file, from 0)
        self._lock = threading.Lock()  # the link reads from a worker thread; maintenance from another

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> CelFile:
        from callcenter.pbx.root import host_path

        return cls(host_path(settings, CEL_FILE), **kwargs)

    def generation(self, n: int) -> Path:
        return self.path if n == 0 else self.path.with_name(f"{self.path.name}.{n}")

    def _generations(self) -> list[tuple[Path, os.stat_result]]:
        """The file and its rotated copies that exist, newest first."""
        found = []
        for n in range(self.keep + 1):
            path = self.generation(n)
            try:
                found.append((path, path.stat()))
            except FileNotFoundError:
                continue
        return found

    @staticmethod
    def _read(path: Path, offset: int, *, skip_partial: bool = False) -> tuple[bytes, int]:
        """Whole lines from ``offset`` on, and the offset after the last of them."""
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return b"", offset
        end = data.rfind(b"\n")
        if end < 0:
            return b"", offset
        start = data.find(b"\n") + 1 if skip_partial else 0
        return data[start: end + 1], offset + end + 1

    def read_new(self, since: float | None = None) -> list[dict[str, str]]:
        with self._lock:
            first = self._offset is None
            chunks = self._read_first() if first else self._read_next()
            records = [r for chunk in chunks for r in parse_cel_lines(chunk.decode("utf-8", "replace"))]
            if first:
                floor = (since if since is not None else time.time() - self.backlog_seconds) - 5.0
                cut = datetime.fromtimestamp(floor, UTC).strftime("%Y-%m-%d %H:%M:%S")
                records = [r for r in records if r["eventtime"][:19] >= cut]  # ISO-like text sorts by time
            self._maybe_rotate()
            return records

    def _read_first(self) -> list[bytes]:
        """The last ``backlog_bytes`` of the current file, and of ``.1`` if the file is shorter
        (a rotation just before the start must not hide the last minutes)."""
        gens = self._generations()
        current = gens[0] if gens and gens[0][0] == self.path else None
        self._offset, self._inode = 0, None
        chunks: list[bytes] = []
        budget = self.backlog_bytes
        for path, stat in gens[:2] if current is not None else gens[:1]:
            start = max(0, stat.st_size - budget)
            chunk, end = self._read(path, start, skip_partial=start > 0)
            chunks.insert(0, chunk)
            budget -= stat.st_size - start
            if path == self.path:
                self._offset, self._inode = end, stat.st_ino
            if budget <= 0:
                break
        return chunks

    def _read_next(self) -> list[bytes]:
        gens = self._generations()
        inodes = [stat.st_ino for _, stat in gens]
        current = 0 if gens and gens[0][0] == self.path else -1  # the file Asterisk writes, if any yet
        if self._inode is None:
            # the last read finished a rotated file before Asterisk started the next: read that from 0
            at, offset = current, 0
        elif self._inode in inodes:
            at, offset = inodes.index(self._inode), self._offset or 0
            if gens[at][1].st_size < offset:  # truncated in place (copy-truncate): read it again
                offset = 0
        else:
            log.warning("CEL file %s: the file read last was rotated away before it was finished; "
                        "reading the current one from its start", self.path)
            at, offset = current, 0
        chunks: list[bytes] = []
        self._inode, self._offset = None, 0
        for i in range(at, -1, -1):
            path, stat = gens[i]
            chunk, end = self._read(path, offset)
            chunks.append(chunk)
            offset = 0
            if path == self.path:
                self._inode, self._offset = stat.st_ino, end
        return chunks

    def mark(self) -> tuple[int, int] | None:
        """Where the current file ends now (at a whole line): ``advance()`` to it later."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        with open(self.path, "rb") as fh:
            start = max(0, stat.st_size - 65536)
            fh.seek(start)
            tail = fh.read(stat.st_size - start)
        end = tail.rfind(b"\n")
        return (stat.st_ino, start + end + 1) if end >= 0 else (stat.st_ino, 0)

    def advance(self, mark: tuple[int, int] | None) -> None:
        """Count as consumed what was in the file at ``mark`` (the link received it live), then
        rotate if due."""
        with self._lock:
            if mark is not None and self._offset is not None and self._inode == mark[0] \
                    and mark[1] > self._offset:
                self._offset = mark[1]
            self._maybe_rotate()

    def _maybe_rotate(self) -> None:
        if not self.rotate_bytes or self._inode is None or (self._offset or 0) < self.rotate_bytes:
            return
        try:
            if self.path.stat().st_ino != self._inode:
                return  # someone else rotated it already
            oldest = self.generation(self.keep)
            oldest.unlink(missing_ok=True)
            for n in range(self.keep - 1, -1, -1):
                src = self.generation(n)
                if src.exists():
                    src.rename(self.generation(n + 1))
        except OSError as exc:
            log.warning("CEL file %s: rotation failed (%s); not rotating in this process", self.path, exc)
            self.rotate_bytes = None
            return
        self.rotations += 1
        log.info("CEL file %s rotated at %d bytes (keeping %d older files)", self.path, self._offset, self.keep)


def parse_cel_lines(text: str) -> Iterable[dict[str, str]]:
    """Rows of the events the call log keeps (the others are skipped before any further parsing)."""
    for row in csv.reader(io.StringIO(text)):
        if len(row) < len(CEL_FIELDS) or row[0] not in CEL_KINDS:
            continue
        yield dict(zip(CEL_FIELDS, row[: len(CEL_FIELDS)]))


__all__ = [
    "CEL_FILE", "CEL_KINDS", "CallLogWriter", "CelFile", "CelSource", "LogEntry", "WriteResult", "cel_entry",
    "parse_ami_time", "parse_cel_lines", "parse_cel_time",
]
