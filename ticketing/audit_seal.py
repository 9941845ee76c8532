"""A1: what someone who can write the database cannot forge.

Each event's hash is an HMAC-SHA256 under a secret key held outside the database, and the chain's
head is written, signed with that key, to a checkpoint log outside the database. Whoever edits an
event and re-hashes the chain without the key produces hashes that do not verify; whoever deletes
the newest events and rewinds the head still leaves a checkpoint naming a later event.

Where keys and checkpoints live is the composition root's business (callcenter.audit_vault): it
hands this module a `Vault` once per process with `configure`. A module-level setting rather than a
parameter of `record`: some twenty callers across ticketing/, agi/, callback/ and callcenter/
append events, and one process serves one install.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditKey:
    """One key: it seals the events from `from_event` on, up to the next key's first event."""

    key_id: int
    from_event: int
    secret: bytes = field(repr=False)


class Vault(Protocol):
    """Keys and checkpoints, kept outside the database."""

    def keys(self, next_event: int | None) -> Sequence[AuditKey]:
        """Every key, by `from_event`. Called under the chain-head lock with the id of the next
        event to append (a vault without a key yet starts its first one there), or with None to
        only read."""

    def append_checkpoint(self, line: str) -> None: ...

    def checkpoint_lines(self) -> Iterable[str]: ...


_vault: Vault | None = None


def configure(vault: Vault | None) -> None:
    """Set this process's vault (callcenter calls this; tests with their own state directory)."""
    global _vault
    _vault = vault


@contextmanager
def using(vault: Vault) -> Iterator[Vault]:
    """This process's vault is `vault` for the block, then what it was (checking another install's
    record, e.g. a restore before it is moved into place)."""
    global _vault
    previous, _vault = _vault, vault
    try:
        yield vault
    finally:
        _vault = previous


def current_vault() -> Vault:
    if _vault is None:
        raise RuntimeError("A1: no audit key configured (the composition root calls ticketing.audit_seal.configure)")
    return _vault


def key_for(keys: Sequence[AuditKey], event_id: int) -> AuditKey | None:
    """The key that seals `event_id`; None for events older than the first key (unkeyed SHA-256)."""
    chosen = None
    for key in keys:
        if key.from_event <= event_id:
            chosen = key
        else:
            break
    return chosen


def seal(key: AuditKey | None, prev_hash: str, payload: str) -> str:
    data = (prev_hash + payload).encode()
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key.secret, data, hashlib.sha256).hexdigest()


# ---- checkpoints: one line per head that was committed ----------------------------------------

@dataclass(frozen=True)
class Checkpoint:
    last_id: int
    last_hash: str
    count: int
    at: str
    line_no: int


def _mac(key: AuditKey, body: str) -> str:
    return hmac.new(key.secret, b"audit-checkpoint\n" + body.encode(), hashlib.sha256).hexdigest()


def checkpoint_line(head: Sequence, keys: Sequence[AuditKey], at: datetime) -> str:
    """`checkpoint last_id=… last_hash=… count=… at=… key=… mac=…`, signed with the newest key."""
    key = max(keys, key=lambda k: k.key_id)
    last_id, last_hash, count = head
    body = (f"checkpoint last_id={last_id} last_hash={last_hash} count={count} "
            f"at={at.astimezone(UTC).isoformat()} key={key.key_id}")
    return f"{body} mac={_mac(key, body)}"


def announce(head: Sequence) -> None:
    """Write a checkpoint of a committed head. The transaction is already committed: a failure
    to write is logged, never raised (the next commit writes a newer checkpoint)."""
    vault = _vault
    if vault is None:
        return
    try:
        keys = vault.keys(None)
        if keys:
            vault.append_checkpoint(checkpoint_line(head, keys, datetime.now(UTC)))
    except Exception:  # noqa: BLE001 - see above
        log.exception("A1: audit checkpoint not written")


def signed_checkpoints(lines: Iterable[str], keys: Sequence[AuditKey]) -> tuple[dict[int, Checkpoint], list[str]]:
    """The validly signed checkpoints by the event they name, and a problem per line that is not."""
    by_id = {k.key_id: k for k in keys}
    points: dict[int, Checkpoint] = {}
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        body, _, mac = line.rpartition(" mac=")
        try:
            values = dict(part.split("=", 1) for part in body.split(" ")[1:])
            key = by_id.get(int(values["key"]))
            point = Checkpoint(int(values["last_id"]), values["last_hash"], int(values["count"]), values["at"], number)
        except (KeyError, ValueError):
            key = point = None
        if key is None or point is None or not hmac.compare_digest(_mac(key, body), mac):
            problems.append(f"checkpoint line {number}: signature does not match (edited or forged)")
            continue
        points[point.last_id] = point
    return points, problems
