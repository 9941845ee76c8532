"""`callcenter restore`: a fresh install from a backup (callcenter/ops/backup.py).

Everything is first written and checked in a staging directory next to the target state directory
(every member against the manifest's checksums, the secrets opened, the database restored and
migrated to head, the audit chain verified with the restored keys and checkpoints); only then are
the files moved into place. A wrong passphrase or a damaged archive leaves nothing behind. On
PostgreSQL the restore is one transaction, and its schema is dropped again if a later check fails.
"""
from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlalchemy import text

from callcenter.audit_vault import CHECKPOINT_FILE, KEY_FILE, FileVault
from callcenter.errors import INVALID
from callcenter.ops.backup import (
    FORMAT, MANIFEST, PG_MEMBER, PG_RESTORE, SECRETS_MEMBER, SQLITE_MEMBER, VERSION, BackupError,
    snapshot_figures,
    libpq, open_secrets, pg_schema, run_tool, sha256_file,
)
from ticketing import audit, audit_seal
from ticketing.store import make_engine, make_session_factory, normalize_url, session_scope, upgrade


@dataclass(frozen=True)
class Targets:
    """Where a restore writes."""

    state_dir: Path
    database_url: str       # SQLite (a file) or PostgreSQL (its search_path's schema)
    config_dir: Path
    recordings_dir: Path


@dataclass
class RestoreReport:
    manifest: dict
    revision_before: str | None = None
    revision: str | None = None
    case_count: int = 0
    audit_checked: int = 0
    recordings: int = 0
    notes: list[str] = field(default_factory=list)


def _head_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    from ticketing.store import alembic_config

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def _is_sqlite(url: str) -> bool:
    return normalize_url(url).startswith("sqlite")


def _sqlite_path(url: str) -> Path:
    from sqlalchemy.engine import make_url

    return Path(make_url(url).database)


def _read_manifest(tar: tarfile.TarFile) -> dict:
    try:
        manifest = json.loads(tar.extractfile(MANIFEST).read())
    except (KeyError, AttributeError, ValueError, tarfile.TarError) as exc:
        raise BackupError("backup_corrupt", f"the archive has no readable {MANIFEST} ({exc})", INVALID) from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BackupError("backup_corrupt", f"not a {FORMAT} of version {VERSION}", INVALID)
    return manifest


def _extract(tar: tarfile.TarFile, manifest: dict, into: Path) -> None:
    """Every member the manifest names, checked against its checksum; nothing else."""
    files = manifest["files"]
    for name in files:
        parts = PurePosixPath(name).parts
        if PurePosixPath(name).is_absolute() or ".." in parts or not parts:
            raise BackupError("backup_corrupt", f"member {name!r} points outside the archive", INVALID)
    seen = set()
    try:
        for member in tar:
            if member.name == MANIFEST:
                continue
            if member.name not in files or not member.isfile():
                raise BackupError("backup_corrupt", f"member {member.name!r} is not in the manifest", INVALID)
            dest = into.joinpath(*PurePosixPath(member.name).parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            if sha256_file(dest) != files[member.name]["sha256"]:
                raise BackupError("backup_corrupt", f"{member.name}: checksum differs from the manifest", INVALID)
            seen.add(member.name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError("backup_corrupt", f"the archive cannot be read ({exc})", INVALID) from None
    missing = set(files) - seen
    if missing:
        raise BackupError("backup_corrupt", f"{len(missing)} members missing, e.g. {sorted(missing)[0]}", INVALID)


def _pg_has_tables(url: str) -> tuple[str, bool, bool]:
    """(the URL's schema, whether it holds tables, whether it exists)."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            schema = pg_schema(conn)
            exists = conn.execute(text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}).scalar()
            tables = conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = :s"), {"s": schema}).scalar()
            return schema, bool(tables), bool(exists)
    finally:
        engine.dispose()


def _pg_execute(url: str, *statements: str) -> None:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pg_restore(dump: Path, url: str, source_schema: str, force: bool) -> str:
    """pg_restore in one transaction into the URL's schema (the dump names its own schema: it is
    restored under that name, then renamed). Returns the target schema."""
    target, has_tables, exists = _pg_has_tables(url)
    if has_tables and not force:
        raise BackupError("target_not_empty", f"schema {target} already holds tables: restore into an empty one "
                          "(or --force to replace it)")
    if source_schema != target:
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            with engine.connect() as conn:
                taken = conn.execute(text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"),
                                     {"s": source_schema}).scalar()
        finally:
            engine.dispose()
        if taken:
            raise BackupError("target_not_empty", f"the backup's schema {source_schema} exists in the target "
                              f"database: restore into schema {source_schema} itself, or into another database")
    if exists and (has_tables or source_schema == target):
        # empty (or --force): the dump makes it again (`public` too: pg_dump -n writes CREATE SCHEMA)
        _pg_execute(url, f"DROP SCHEMA {_q(target)} CASCADE")
    uri, env = libpq(url)
    run_tool([PG_RESTORE, "--single-transaction", "--no-owner", "--no-privileges", f"--dbname={uri}", str(dump)],
             env, "pg_restore")
    if source_schema != target:
        _pg_execute(url, f"DROP SCHEMA IF EXISTS {_q(target)} CASCADE",
                    f"ALTER SCHEMA {_q(source_schema)} RENAME TO {_q(target)}")
    return target


def _verify(url: str, state: Path, manifest: dict, report: RestoreReport) -> None:
    """`audit verify` with the restored keys and checkpoints, and the figures of the manifest."""
    engine = make_engine(url)
    try:
        with audit_seal.using(FileVault(state)), session_scope(make_session_factory(engine)) as session:
            verified = audit.verify(session)
            figures = snapshot_figures(session.connection())
    finally:
        engine.dispose()
    if not verified.ok:
        raise BackupError("audit_verify_failed", "the restored audit record does not verify: "
                          + "; ".join(verified.problems[:5]))
    head = manifest["audit"]
    if figures.head is not None and (figures.head[0], figures.head[1]) != (head["head_id"], head["head_hash"]):
        raise BackupError("audit_verify_failed", f"restored audit head {figures.head[0]} differs from the "
                          f"manifest's {head['head_id']}")
    if figures.case_count != manifest["case_count"]:
        raise BackupError("backup_corrupt", f"restored {figures.case_count} cases, the manifest says "
                          f"{manifest['case_count']}")
    report.audit_checked, report.case_count, report.revision = verified.checked, figures.case_count, figures.revision


# What makes a state directory an install's, not a fresh one: its database and audit record. What
# `callcenter asterisk install` leaves there (the Asterisk root, generated AMI and SIP secrets) may
# be there: the restored secrets replace the generated ones, and `asterisk install` renders them.
_INSTALL_RECORD = ("callcenter.db", KEY_FILE, CHECKPOINT_FILE)


def _non_empty(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _same_tree(staged: Path, target: Path) -> bool:
    names = {p.relative_to(staged) for p in staged.rglob("*") if p.is_file()} if staged.is_dir() else set()
    there = {p.relative_to(target) for p in target.rglob("*") if p.is_file()}
    return names == there and all(sha256_file(staged / n) == sha256_file(target / n) for n in names)


def _move_tree(src: Path, dest: Path, mode: int | None = None) -> int:
    moved = 0
    if not src.is_dir():
        return moved
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        to = dest / path.relative_to(src)
        to.parent.mkdir(parents=True, exist_ok=True)
        if mode is not None:
            os.chmod(path, mode)
        shutil.move(path, to)
        moved += 1
    return moved


def restore(archive: Path, targets: Targets, passphrase: str, *, force: bool = False) -> RestoreReport:
    """Rebuild an install at `targets` from `archive`: checked whole before anything is moved in.
    The target is a new state directory, or one where only `asterisk install` has run."""
    state = Path(targets.state_dir).absolute()
    url = targets.database_url
    held = [name for name in _INSTALL_RECORD if (state / name).exists()]
    if held and not force:
        raise BackupError("target_not_empty", f"{state} holds an install ({', '.join(held)}): restore into a new "
                          "state directory (or --force to overwrite)")
    if _non_empty(targets.recordings_dir) and not force:
        raise BackupError("target_not_empty", f"{targets.recordings_dir} already holds recordings (--force to add)")
    if _is_sqlite(url) and _sqlite_path(url).exists() and not force:
        raise BackupError("target_not_empty", f"{_sqlite_path(url)} exists (--force to replace it)")
    try:
        tar = tarfile.open(archive, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise BackupError("backup_corrupt", f"{archive} is not a readable backup ({exc})", INVALID) from None
    state.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{state.name}.restore-", dir=state.parent))
    restored_schema = None
    try:
        with tar:
            manifest = _read_manifest(tar)
            _extract(tar, manifest, staging)
        report = RestoreReport(manifest, revision_before=manifest["schema_revision"])
        secrets_dir = staging / "state"
        secrets_dir.mkdir(mode=0o700)
        for name, data in open_secrets((staging / SECRETS_MEMBER).read_bytes(), passphrase).items():
            if "/" in name or name.startswith("."):
                raise BackupError("backup_corrupt", f"secret {name!r} is not a file name", INVALID)
            fd = os.open(secrets_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        config = staging / "config"
        if _non_empty(targets.config_dir) and not _same_tree(config, targets.config_dir) and not force:
            raise BackupError("target_not_empty", f"{targets.config_dir} differs from the backup's config/ "
                              "(--force to replace it)")
        kind = manifest["database"]["kind"]
        if kind != ("sqlite" if _is_sqlite(url) else "postgresql"):
            raise BackupError("backend_mismatch", f"the backup is of a {kind} database: restore it into one")
        if kind == "sqlite":
            db_file = staging / SQLITE_MEMBER
            work_url = f"sqlite:///{db_file}"
        else:
            work_url = url
            restored_schema = _pg_restore(staging / PG_MEMBER, url, manifest["database"]["schema"], force)
        if report.revision_before != _head_revision(work_url):
            upgrade(work_url)  # a backup of an older release: its migrations run here
            report.notes.append(f"schema migrated from {report.revision_before}")
        _verify(work_url, secrets_dir, manifest, report)
        # every check passed: move into place
        if kind == "sqlite":
            dest = _sqlite_path(url)
            dest.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("-wal", "-shm", ""):  # the write-ahead log too, if a connection left one
                Path(f"{dest}{suffix}").unlink(missing_ok=True)
                if Path(f"{db_file}{suffix}").exists():
                    shutil.move(f"{db_file}{suffix}", f"{dest}{suffix}")
        state.mkdir(parents=True, exist_ok=True)
        _move_tree(secrets_dir, state, mode=0o600)
        if not (_non_empty(targets.config_dir) and _same_tree(config, targets.config_dir)):
            if targets.config_dir.exists():
                shutil.rmtree(targets.config_dir)
            _move_tree(config, targets.config_dir)
        report.recordings = _move_tree(staging / "recordings", targets.recordings_dir)
        _check_recordings(manifest, targets.recordings_dir)
        return report
    except BaseException:
        if restored_schema is not None:
            _pg_execute(url, f"DROP SCHEMA IF EXISTS {_q(restored_schema)} CASCADE",
                        f"CREATE SCHEMA {_q(restored_schema)}")
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_recordings(manifest: dict, directory: Path) -> None:
    """Each recording in place has the checksum the backup recorded."""
    for name, info in manifest["files"].items():
        if name.startswith("recordings/"):
            path = directory / name.removeprefix("recordings/")
            if sha256_file(path) != info["sha256"]:
                raise BackupError("backup_corrupt", f"{path}: checksum differs from the manifest", INVALID)
