"""Backup and restore of an install (issue 19 item 4), on SQLite and PostgreSQL: a backup taken
while cases are being written is one consistent state, and a restore into a new state directory
and database gives the same cases, the same verified audit chain, the same recordings, and the
next case number after the last one."""
from __future__ import annotations

import io
import json
import os
import tarfile
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from callcenter.audit_vault import install as install_audit_vault
from callcenter.ops.backup import BackupError, Sources, take_backup
from callcenter.ops.restore import Targets, restore
from tests.conftest import CONFIG_DIR, PG_BASE_URL
from tests.helpers import actor_named, chain_verified
from ticketing.audit import SYSTEM
from ticketing.enums import CaseKind, Channel
from ticketing.models import AuditHead, Case, WorkOrder
from ticketing.store import make_engine, make_session_factory, session_scope

PASSPHRASE = "correct horse battery staple"
SIP = {"op8001": "sip-secret-8001-abcdef"}


def _accept(domain, sessions, title: str) -> str:
    with session_scope(sessions) as s:
        case = domain.workflow(s).accept(SYSTEM, kind=CaseKind.COMPLAINT, channel=Channel.MOBILE, title=title,
                                         description="路灯不亮", citizen_phone="13800000001")
        return case.number


@pytest.fixture
def install(seeded, domain, engine, db_url, tmp_path):
    """A running install's store: cases, work orders, audit events, recordings and secrets."""
    with session_scope(seeded) as s:
        wf = domain.workflow(s)
        for i in range(3):
            case = wf.accept(SYSTEM, kind=CaseKind.COMPLAINT, channel=Channel.MOBILE, title=f"case {i}",
                             description="井盖缺失", citizen_phone="13800000002")
            wf.dispatch(actor_named(s, "bo1"), case, units=["urban_management"])
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for i in range(3):
        (recordings / f"message-{i}.wav").write_bytes(os.urandom(2000 + i))
    (tmp_path / "secrets.env").write_text("CALLCENTER_AMI_SECRET=ami-secret-abcdef123\n")
    (tmp_path / "sip-secrets.json").write_text(json.dumps(SIP))
    return Sources(db_url, tmp_path, CONFIG_DIR, recordings)


@pytest.fixture
def new_database(db_url, tmp_path):
    """An empty database for the restored install: a new SQLite file, or a new PostgreSQL database
    (the backup's schema name exists in the test database itself)."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'new' / 'callcenter.db'}"
        return
    name = f"r_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_BASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"{PG_BASE_URL.rsplit('/', 1)[0]}/{name}?options=-csearch_path%3Drestored"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def _targets(tmp_path: Path, url: str) -> Targets:
    new = tmp_path / "new"
    return Targets(new / "var", url, new / "config", new / "var" / "recordings")


def _numbers(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(Case.number).order_by(Case.id)).scalars())
    finally:
        engine.dispose()


def test_backup_while_cases_are_written_restores_into_a_new_install(install, domain, sessions, new_database,
                                                                    tmp_path, audit_vault):
    """A1, issue 19: backup during writes is consistent (its chain verifies, its case count is the
    manifest's); restored into a new state directory (where only `asterisk install` ran) and a new
    database: same cases, same audit head, recordings' checksums equal, secrets 0600, and the next
    case number follows on."""
    written, stop = threading.Semaphore(0), threading.Event()
    failures: list[BaseException] = []

    def writer():
        try:
            n = 0
            while not stop.is_set():
                _accept(domain, sessions, f"concurrent {n}")
                n += 1
                written.release()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)
            written.release()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        written.acquire()  # the writer is under way
        manifest = take_backup(install, tmp_path / "backup.tar", PASSPHRASE)
        written.acquire()  # ... and wrote at least one case after the snapshot
    finally:
        stop.set()
        thread.join()
    assert not failures, failures
    live = _numbers(install.database_url)
    assert len(live) > manifest["case_count"] >= 4
    assert manifest["audit"]["checkpoint"].startswith(f"checkpoint last_id={manifest['audit']['head_id']} ")
    assert sum(name.startswith("recordings/") for name in manifest["files"]) == 3

    targets = _targets(tmp_path, new_database)
    targets.state_dir.mkdir(parents=True)  # where only `asterisk install` ran: its generated secret is replaced
    (targets.state_dir / "secrets.env").write_text("CALLCENTER_AMI_SECRET=generated-by-install\n")
    report = restore(tmp_path / "backup.tar", targets, PASSPHRASE)

    restored = _numbers(new_database)
    assert restored == live[:manifest["case_count"]], "the snapshot's cases, in order, and only those"
    assert report.case_count == manifest["case_count"] and report.recordings == 3
    for name in ("audit.key", "audit-checkpoints.log", "secrets.env", "sip-secrets.json"):
        assert (targets.state_dir / name).stat().st_mode & 0o777 == 0o600, name
    assert json.loads((targets.state_dir / "sip-secrets.json").read_text()) == SIP
    assert (targets.state_dir / "secrets.env").read_text() == (install.state_dir / "secrets.env").read_text()
    for wav in install.recordings_dir.iterdir():
        assert (targets.recordings_dir / wav.name).read_bytes() == wav.read_bytes()
    assert (targets.config_dir / "policy.yaml").read_bytes() == (CONFIG_DIR / "policy.yaml").read_bytes()

    new_engine = make_engine(new_database)
    try:
        new_sessions = make_session_factory(new_engine)
        install_audit_vault(targets.state_dir)  # the restored install's keys and checkpoints
        with session_scope(new_sessions) as s:
            head = s.get(AuditHead, 1)
            assert (head.last_id, head.last_hash) == (manifest["audit"]["head_id"], manifest["audit"]["head_hash"])
            assert s.execute(select(func.count()).select_from(WorkOrder)).scalar_one() == 3
        number = _accept(domain, new_sessions, "after the restore")
        day, seq = restored[-1].split("-")
        assert number == f"{day}-{int(seq) + 1:06d}"
        assert chain_verified(new_sessions) == manifest["audit"]["count"] + 1
    finally:
        new_engine.dispose()


def test_wrong_passphrase_or_damaged_archive_writes_nothing(install, new_database, tmp_path):
    """Issue 19: a wrong passphrase or a corrupt archive is a clear error and leaves no file, no
    table behind; a restore never writes over an install that is there."""
    archive = tmp_path / "backup.tar"
    take_backup(install, archive, PASSPHRASE)
    targets = _targets(tmp_path, new_database)

    with pytest.raises(BackupError) as wrong:
        restore(archive, targets, "not the passphrase")
    assert wrong.value.code == "wrong_passphrase" and "passphrase" in wrong.value.message

    damaged = tmp_path / "damaged.tar"
    with tarfile.open(archive) as src, tarfile.open(damaged, "w") as out:
        for member in src:
            data = src.extractfile(member).read()
            if member.name.startswith("recordings/"):
                data = b"X" + data[1:]
            out.addfile(member, io.BytesIO(data))
    with pytest.raises(BackupError) as corrupt:
        restore(damaged, targets, PASSPHRASE)
    assert corrupt.value.code == "backup_corrupt" and "checksum" in corrupt.value.message

    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").rglob("*")), "nothing, not even staging"
    if not new_database.startswith("sqlite"):
        engine = make_engine(new_database)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
                                     "('pg_catalog', 'information_schema')")).scalar() == 0
        engine.dispose()

    restore(archive, targets, PASSPHRASE)
    with pytest.raises(BackupError) as again:
        restore(archive, targets, PASSPHRASE)
    assert again.value.code == "target_not_empty"


def test_cli_backup_of_an_older_release_restores_migrated_to_head(tmp_path):
    """Issue 19: `callcenter backup` / `restore` as an administrator runs them, the passphrase
    from the environment (never argv); a backup of an older schema comes back at head."""
    from alembic.script import ScriptDirectory
    from click.testing import CliRunner

    from callcenter.cli import main
    from callcenter.settings import get_settings
    from ticketing.store import alembic_config, upgrade

    env = {"CALLCENTER_STATE_DIR": str(tmp_path / "var"), "CALLCENTER_CONFIG_DIR": str(CONFIG_DIR),
           "CALLCENTER_DATABASE_URL": None, "BACKUP_PASSPHRASE": PASSPHRASE}
    upgrade(f"sqlite:///{tmp_path / 'var' / 'callcenter.db'}", "0006")

    def run(*args):
        get_settings.cache_clear()  # the settings of this install, from env
        try:
            result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        return result.output

    out = run("backup", str(tmp_path / "b.tar"), "--passphrase-env", "BACKUP_PASSPHRASE")
    assert "schema 0006" in out
    out = run("restore", str(tmp_path / "b.tar"), "--state-dir", str(tmp_path / "new"),
              "--config-dir", str(tmp_path / "new-config"), "--passphrase-env", "BACKUP_PASSPHRASE")
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert "schema migrated from 0006" in out and f"schema {head}" in out
    assert (tmp_path / "new" / "callcenter.db").exists()
