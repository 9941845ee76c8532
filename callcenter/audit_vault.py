"""A1: the audit key and the checkpoint log of this install, in the state directory.

- ``<state_dir>/audit.key`` (mode 0600): JSON ``{"keys": [{"id", "from_event", "secret", "created"}]}``.
  Key 1 is made on first use, starting at the next event; ``callcenter audit rotate-key`` adds a key
  for the events from the next id on. Old keys stay (verify needs them): each key seals the events
  from its ``from_event`` up to the next key's. Ranges by id rather than a key id per event: no
  schema change, and the choice is made under the chain-head lock, where every appender re-reads
  the file if it changed, so a running server picks up a rotation at its next event.
- ``<state_dir>/audit-checkpoints.log`` (0600, append-only): one signed line per commit that moved
  the chain head (ticketing.audit_seal.checkpoint_line). One ``write`` of ~200 bytes, no fsync: the
  adversary is a database writer, not a crash.

The files belong to the OS user running the hotline, not to the database's user.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ticketing import audit_seal
from ticketing.audit_seal import AuditKey

log = logging.getLogger(__name__)

KEY_FILE = "audit.key"
CHECKPOINT_FILE = "audit-checkpoints.log"


class FileVault:
    """ticketing.audit_seal.Vault on files in the state directory."""

    def __init__(self, state_dir: Path | str):
        self.key_path = Path(state_dir) / KEY_FILE
        self.checkpoint_path = Path(state_dir) / CHECKPOINT_FILE
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._keys: tuple[AuditKey, ...] = ()

    def keys(self, next_event: int | None) -> Sequence[AuditKey]:
        with self._lock:
            try:
                info = os.stat(self.key_path)
            except FileNotFoundError:
                if next_event is None:
                    return ()
                self._write_new(self._create, next_event)
                info = os.stat(self.key_path)
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
            if stamp != self._stamp:
                if stat.S_IMODE(info.st_mode) & 0o077:
                    log.warning("A1: %s is readable by others (mode %o): chmod 600", self.key_path,
                                stat.S_IMODE(info.st_mode))
                self._keys, self._stamp = _read_keys(self.key_path), stamp
            return self._keys

    def rotate(self, from_event: int) -> AuditKey:
        """A new key for the events from `from_event` on (call under the chain-head lock)."""
        with self._lock:
            entries = _entries(self.key_path) if self.key_path.exists() else []
            if any(int(e["from_event"]) > from_event for e in entries):
                raise ValueError(f"a key starts after event {from_event}: the chain head went back")
            # a key that starts at the same event stays (it may have signed checkpoints); the
            # newer one, with the higher id, seals the events
            new = AuditKey(max((int(e["id"]) for e in entries), default=0) + 1, from_event, secrets.token_bytes(32))
            self._write_new(lambda path: _write_keys(path, [*entries, _entry(new)]), None)
            self._stamp = None  # read again on next use
            return new

    def append_checkpoint(self, line: str) -> None:
        fd = os.open(self.checkpoint_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())  # one write: lines of concurrent writers do not mix
        finally:
            os.close(fd)

    def checkpoint_lines(self) -> Iterator[str]:
        try:
            with open(self.checkpoint_path, encoding="utf-8", errors="replace") as lines:
                yield from lines
        except FileNotFoundError:
            return

    def _create(self, path: Path, next_event: int) -> None:
        _write_keys(path, [_entry(AuditKey(1, next_event, secrets.token_bytes(32)))])

    def _write_new(self, write, next_event: int | None) -> None:
        """Write the key file whole to a new 0600 file, then put it in place (atomic rename); the
        first key: only if no other process made it meanwhile."""
        self.key_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.key_path.with_name(f".{KEY_FILE}.{os.getpid()}.{threading.get_ident()}")
        if next_event is not None:
            write(tmp, next_event)
            try:
                os.link(tmp, self.key_path)  # fails if another process made it first: keep theirs
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        else:
            write(tmp)
            os.replace(tmp, self.key_path)


def _entry(key: AuditKey) -> dict:
    return {"id": key.key_id, "from_event": key.from_event, "secret": key.secret.hex(),
            "created": datetime.now(UTC).isoformat(timespec="seconds")}


def _entries(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["keys"]


def _write_keys(path: Path, entries: list[dict]) -> None:
    body = {"keys": entries}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(body, out, indent=1)
        out.write("\n")
    os.chmod(path, 0o600)  # whatever the umask or an older file's mode


def _read_keys(path: Path) -> tuple[AuditKey, ...]:
    keys = [AuditKey(int(k["id"]), int(k["from_event"]), bytes.fromhex(k["secret"])) for k in _entries(path)]
    return tuple(sorted(keys, key=lambda k: (k.from_event, k.key_id)))


def install(state_dir: Path | str) -> FileVault:
    """Give this process's audit chain the vault of the install at `state_dir` (the composition
    root calls it before anything records an event)."""
    vault = FileVault(state_dir)
    audit_seal.configure(vault)
    return vault
