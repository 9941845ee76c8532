"""`callcenter backup`: one tar file holding a consistent snapshot of an install, taken while it runs.

Members: ``database/callcenter.db`` (SQLite's online backup API) or ``database/callcenter.pgdump``
(``pg_dump -Fc`` of the install's schema), ``recordings/…``, ``config/…``, ``secrets.enc`` (the
state directory's secrets sealed with a passphrase: scrypt, then AES-256-GCM) and ``manifest.json``
(written last: schema revision, case count, audit head and the checkpoint signed for it, and the
SHA-256 of every other member).

The manifest's figures are read from the snapshot itself (the SQLite copy; on PostgreSQL the
exported snapshot pg_dump runs in), so they agree with the dump whatever commits meanwhile.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, func, select, text
from sqlalchemy.engine import make_url

from callcenter.audit_vault import CHECKPOINT_FILE, KEY_FILE, FileVault
from callcenter.errors import INVALID, REFUSED, AppError
from callcenter.pbx.credentials import SECRETS_ENV, SIP_SECRETS
from callcenter.pbx.root import recordings_dir
from callcenter.settings import Settings
from ticketing import audit_seal
from ticketing.models import AuditHead, Case
from ticketing.store import make_engine, normalize_url

FORMAT = "callcenter-backup"
VERSION = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/callcenter.db"
PG_MEMBER = "database/callcenter.pgdump"
SECRETS_MEMBER = "secrets.enc"
# The state directory's secrets: audit keys and checkpoints (A1), the AMI secret, the SIP passwords.
# API tokens are random values stored hashed in the database: no token secret lives on disk.
SECRET_FILES = (KEY_FILE, CHECKPOINT_FILE, SECRETS_ENV, SIP_SECRETS)
PG_DUMP = "pg_dump"
PG_RESTORE = "pg_restore"

_MAGIC = b"CCSEC1"
_KDF = {"name": "scrypt", "n": 2 ** 15, "r": 8, "p": 1, "length": 32}
_AAD = b"callcenter-backup secrets v1"


class BackupError(AppError):
    """A backup or restore that cannot go on; the message says why and what to do."""

    def __init__(self, code: str, message: str, kind: str = REFUSED):
        super().__init__(code, message)
        self.kind = kind


@dataclass(frozen=True)
class Sources:
    """What an install's backup is made of."""

    database_url: str
    state_dir: Path
    config_dir: Path
    recordings_dir: Path

    @classmethod
    def of(cls, settings: Settings) -> Sources:
        return cls(settings.effective_database_url, Path(settings.state_dir), Path(settings.config_dir),
                   recordings_dir(settings))


@dataclass(frozen=True)
class Snapshot:
    """The figures of the database snapshot, read inside it."""

    revision: str | None
    case_count: int
    head: tuple[int, str, int] | None  # audit chain head: last id, last hash, count


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- secrets: scrypt-derived key, AES-256-GCM ---------------------------------------------------

def _derive(passphrase: str, salt: bytes) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=_KDF["length"], n=_KDF["n"], r=_KDF["r"], p=_KDF["p"]).derive(passphrase.encode())


def seal_secrets(files: dict[str, bytes], passphrase: str) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not passphrase:
        raise BackupError("passphrase_missing", "an empty passphrase would leave the secrets readable", INVALID)
    body = json.dumps({name: base64.b64encode(data).decode() for name, data in files.items()}).encode()
    salt, nonce = os.urandom(16), os.urandom(12)
    return _MAGIC + salt + nonce + AESGCM(_derive(passphrase, salt)).encrypt(nonce, body, _AAD)


def open_secrets(blob: bytes, passphrase: str) -> dict[str, bytes]:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 28:
        raise BackupError("backup_corrupt", "the archive's secrets are not in a format this version reads", INVALID)
    salt, nonce = blob[6:22], blob[22:34]
    try:
        body = AESGCM(_derive(passphrase, salt)).decrypt(nonce, blob[34:], _AAD)
    except InvalidTag:
        raise BackupError("wrong_passphrase", "the passphrase does not open this backup's secrets "
                          "(wrong passphrase, or the archive was altered); nothing was written", INVALID) from None
    return {name: base64.b64decode(data) for name, data in json.loads(body).items()}


# ---- PostgreSQL helpers, shared with restore ------------------------------------------------------

def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI for pg_dump/pg_restore (no password in argv: it goes in PGPASSWORD) and the env."""
    parsed = make_url(normalize_url(url))
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def pg_schema(conn: Connection) -> str:
    """The schema the install's tables are in: the first of its search_path."""
    schema = conn.execute(text("SELECT current_schema()")).scalar()
    if schema is None:  # none of the search_path exists yet
        first = conn.execute(text("SHOW search_path")).scalar().split(",")[0].strip().strip('"')
        schema = "public" if first == "$user" else first
    return schema


def run_tool(argv: list[str], env: dict[str, str], what: str) -> None:
    if shutil.which(argv[0]) is None:
        raise BackupError("tool_missing", f"{argv[0]} not found: apt-get install postgresql-client")
    result = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        tail = " ".join(result.stderr.strip().splitlines()[-3:])
        raise BackupError(f"{argv[0]}_failed", f"{what} failed: {tail}")


# ---- reading the snapshot ------------------------------------------------------------------------

def snapshot_figures(conn: Connection) -> Snapshot:
    revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    cases = conn.execute(select(func.count()).select_from(Case)).scalar_one()
    row = conn.execute(select(AuditHead.last_id, AuditHead.last_hash, AuditHead.count)
                       .where(AuditHead.id == 1)).first()
    return Snapshot(revision, cases, tuple(row) if row else None)


def _sqlite_snapshot(url: str, out: Path) -> Snapshot:
    """SQLite's online backup API: one step, so the copy is one consistent state of the file
    while writers carry on (they wait for the read, as for any reader)."""
    path = make_url(url).database
    if not path or not Path(path).exists():
        raise BackupError("database_missing", f"no SQLite database at {path}")
    src = sqlite3.connect(path, timeout=30)
    dst = sqlite3.connect(out)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    engine = make_engine(f"sqlite:///{out}")
    try:
        with engine.connect() as conn:
            return snapshot_figures(conn)
    finally:
        engine.dispose()


def _pg_snapshot(url: str, out: Path) -> tuple[Snapshot, str]:
    """pg_dump of the install's schema in a snapshot we export and read the figures in."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
            snapshot_id = conn.execute(text("SELECT pg_export_snapshot()")).scalar()
            schema = pg_schema(conn)
            figures = snapshot_figures(conn)
            uri, env = libpq(url)
            run_tool([PG_DUMP, "--format=custom", f"--snapshot={snapshot_id}", f"--schema={schema}",
                      "--no-owner", "--no-privileges", f"--file={out}", f"--dbname={uri}"], env, "pg_dump")
            return figures, schema
    finally:
        engine.dispose()


_LAST_ID = re.compile(r"\blast_id=(\d+)\b")


def _checkpoints_up_to(lines: list[str], last_id: int) -> bytes:
    """The checkpoint log as of the snapshot: lines for heads committed after it name events the
    backup does not hold (restored, they would read as a truncated tail)."""
    kept = [line for line in lines if (m := _LAST_ID.search(line)) is None or int(m.group(1)) <= last_id]
    return "".join(line if line.endswith("\n") else line + "\n" for line in kept).encode()


def _secrets(state_dir: Path, snap: Snapshot) -> tuple[dict[str, bytes], str | None]:
    """The secret files, and the checkpoint signed for the snapshot's head (also appended to the
    install's own log, as every commit's is)."""
    vault = FileVault(state_dir)
    checkpoint = None
    keys = vault.keys(None)
    if snap.head is not None and snap.head[0] and keys:
        checkpoint = audit_seal.checkpoint_line(snap.head, keys, datetime.now(UTC))
        vault.append_checkpoint(checkpoint)
    files: dict[str, bytes] = {}
    for name in SECRET_FILES:
        path = state_dir / name
        if path.is_file():
            files[name] = path.read_bytes()
    if CHECKPOINT_FILE in files and snap.head is not None:
        lines = files[CHECKPOINT_FILE].decode(errors="replace").splitlines(keepends=True)
        files[CHECKPOINT_FILE] = _checkpoints_up_to(lines, snap.head[0])
    return files, checkpoint


def _tree(root: Path) -> Iterator[tuple[str, Path]]:
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                yield path.relative_to(root).as_posix(), path


class _Writer:
    """Adds members to the tar and remembers their checksums for the manifest."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        self.files: dict[str, dict] = {}

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, int(datetime.now(UTC).timestamp())
        self.tar.addfile(info, io.BytesIO(data))
        self.files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    def add_file(self, name: str, path: Path) -> None:
        # read once: the checksum is of the very bytes archived, even if the file changes meanwhile
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # removed while we walked (a recording's retention, say)
            return
        self.add_bytes(name, data)


def take_backup(sources: Sources, archive: Path, passphrase: str) -> dict:
    """Write the backup of `sources` to `archive` (whole, or not at all); returns the manifest."""
    archive = Path(archive)
    if not passphrase:
        raise BackupError("passphrase_missing", "an empty passphrase would leave the secrets readable", INVALID)
    archive.parent.mkdir(parents=True, exist_ok=True)
    kind = "postgresql" if normalize_url(sources.database_url).startswith("postgresql") else "sqlite"
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=archive.parent) as tmp:
        dump = Path(tmp) / "db"
        schema = None
        if kind == "sqlite":
            snap = _sqlite_snapshot(sources.database_url, dump)
        else:
            snap, schema = _pg_snapshot(sources.database_url, dump)
        secret_files, checkpoint = _secrets(sources.state_dir, snap)
        partial = Path(tmp) / "archive.tar"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            out = _Writer(tar)
            out.add_file(SQLITE_MEMBER if kind == "sqlite" else PG_MEMBER, dump)
            out.add_bytes(SECRETS_MEMBER, seal_secrets(secret_files, passphrase), 0o600)
            for rel, path in _tree(sources.config_dir):
                out.add_file(f"config/{rel}", path)
            for rel, path in _tree(sources.recordings_dir):
                out.add_file(f"recordings/{rel}", path)
            manifest = {
                "format": FORMAT, "version": VERSION,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "database": {"kind": kind, "schema": schema},
                "schema_revision": snap.revision,
                "case_count": snap.case_count,
                "audit": {"head_id": snap.head[0] if snap.head else 0,
                          "head_hash": snap.head[1] if snap.head else None,
                          "count": snap.head[2] if snap.head else 0,
                          "checkpoint": checkpoint},
                "secrets": {"member": SECRETS_MEMBER, "names": sorted(secret_files), "cipher": "AES-256-GCM",
                            "kdf": _KDF},
                "files": out.files,
            }
            body = json.dumps(manifest, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        os.chmod(partial, 0o600)  # holds the database: personal data
        os.replace(partial, archive)
    return manifest
