"""`callcenter doctor`: each check says OK, WARN or FAIL with what to fix, and the command exits 1 on
any FAIL. Non-live: Asterisk's side is faked at the probes the doctor uses (the live check against
the real Asterisk is tests/live/test_doctor_live.py)."""
from __future__ import annotations

import shutil
import subprocess
from collections import namedtuple
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from callcenter.ops import doctor
from callcenter.ops.doctor import FAIL, OK, WARN
from callcenter.pbx import process, root
from callcenter.settings import Settings

from .conftest import CONFIG_DIR


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path / "state", config_dir=CONFIG_DIR, database_url="")


def _levels(findings) -> list[str]:
    return [f.level for f in findings]


def _config_copy(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    return config


# ---- configuration ----------------------------------------------------------------------------

def test_shipped_configuration_passes(settings):
    findings = doctor.check_config(settings)
    assert _levels(findings) == [OK] * 7, findings


def test_a_config_file_against_its_schema_fails_with_the_file_named(settings, tmp_path):
    config = _config_copy(tmp_path)
    policy = config / "policy.yaml"
    policy.write_text(policy.read_text(encoding="utf-8") + "\ntimezone: Mars/Olympus_Mons\n", encoding="utf-8")
    (config / "operators.yaml").write_text("- {name: no id}\n", encoding="utf-8")
    findings = doctor.check_config(settings.model_copy(update={"config_dir": config}))
    failed = [f for f in findings if f.level == FAIL]
    assert [f.message.split(":")[0] for f in failed] == [f"{config}/policy.yaml", f"{config}/operators.yaml"]
    assert "Mars/Olympus_Mons" in failed[0].message and all(f.fix for f in failed)


# ---- calendar (T1) ----------------------------------------------------------------------------

def _with_year_entered(tmp_path: Path, year: int) -> Path:
    config = _config_copy(tmp_path)
    (config / "calendar_overrides.yaml").write_text(f"{year}:\n  holidays:\n    - {year}-01-01\n  workdays: []\n")
    return config


@pytest.mark.parametrize(("now", "level", "words"), [
    (datetime(2041, 6, 1, tzinfo=UTC), OK, "2041 override, 2042 provisional (due:"),
    (datetime(2041, 12, 1, tzinfo=UTC), WARN, "2042 provisional: deadlines falling next year"),
    (datetime(2043, 3, 1, tzinfo=UTC), FAIL, "2043 (this year) is provisional"),
])
def test_calendar_coverage_of_this_and_next_year(settings, tmp_path, now, level, words):
    """T1: a year without its official arrangement makes deadlines provisional; the doctor says
    which year to enter and how."""
    config = _with_year_entered(tmp_path, 2041)
    [finding] = doctor.check_calendar(settings.model_copy(update={"config_dir": config}), now)
    assert finding.level == level and words in finding.message, finding
    if level != OK:
        assert "callcenter calendar set" in finding.fix


# ---- Asterisk ---------------------------------------------------------------------------------

@pytest.fixture
def installed(monkeypatch):
    monkeypatch.setattr(root, "is_installed", lambda _s: True)
    monkeypatch.setattr(process, "version", lambda _s: "Asterisk 22.10.1")
    monkeypatch.setattr(process, "ami_login", lambda *a, **k: (False, False, "connect 127.0.0.1:5038: refused"))


def test_asterisk_not_installed_is_a_failure(settings):
    assert [(f.level, f.message) for f in doctor.check_asterisk(settings)] == [(FAIL, "not installed")]


def test_asterisk_not_running_is_a_finding_not_a_crash(settings, installed, monkeypatch):
    def not_running(_s, command, timeout=30.0):
        raise root.AsteriskNotRunning("Asterisk is not running")
    monkeypatch.setattr(process, "cli", not_running)
    findings = doctor.check_asterisk(settings)
    assert [(f.level, f.message) for f in findings] == [
        (OK, "Asterisk 22.10.1"), (WARN, "not running: no calls are answered")]
    assert "systemctl start callcenter-asterisk" in findings[1].fix


def test_asterisk_answering_on_ami_is_running_even_when_its_cli_is_out_of_reach(settings, installed, monkeypatch):
    """Not root: `chroot` is refused, so `asterisk -rx` fails; AMI still shows Asterisk runs."""
    def refused(_s, command, timeout=30.0):
        raise root.AsteriskNotRunning("chroot: cannot change root directory: Operation not permitted")
    monkeypatch.setattr(process, "cli", refused)
    monkeypatch.setattr(process, "ami_login", lambda *a, **k: (True, True, "Asterisk Call Manager/11.0.0"))
    findings = doctor.check_asterisk(settings)
    assert [f.level for f in findings] == [OK, WARN, OK]
    assert findings[1].message.startswith("modules not checked") and findings[1].fix == "run doctor as root"


def test_a_missing_module_and_a_refused_ami_login_fail(settings, installed, monkeypatch):
    shown = "Module  Description  Use Count  Status  Support Level\n" + "".join(
        f"{m}.so  x  0  Running  core\n" for m in doctor.REQUIRED_MODULES if m != "res_agi") + "9 modules loaded\n"
    monkeypatch.setattr(process, "cli", lambda _s, command, timeout=30.0: shown)
    monkeypatch.setattr(process, "ami_login", lambda *a, **k: (True, False, "login refused: Authentication failed"))
    findings = doctor.check_asterisk(settings)
    assert [(f.level, f.message) for f in findings[1:]] == [
        (FAIL, "modules not loaded: res_agi"), (FAIL, "AMI refuses the hotline's login: login refused: Authentication failed")]


def test_another_asterisk_version_is_a_warning(settings, installed, monkeypatch):
    monkeypatch.setattr(process, "version", lambda _s: "Asterisk 20.5.0")
    monkeypatch.setattr(process, "cli", lambda *a, **k: (_ for _ in ()).throw(root.AsteriskNotRunning("down")))
    assert doctor.check_asterisk(settings)[0].level == WARN


# ---- certificates -----------------------------------------------------------------------------

def test_certificates_named_in_asterisk_config_are_checked_for_expiry(settings, tmp_path, monkeypatch):
    etc = tmp_path / "root/etc/asterisk"
    etc.mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "10", "-subj", "/CN=pbx",
                    "-keyout", str(etc / "key.pem"), "-out", str(etc / "cert.pem")], check=True, capture_output=True)
    (etc / "pjsip.conf").write_text("[transport-tls]\ntype=transport\ncert_file=/etc/asterisk/cert.pem\n"
                                    ";cert_file=/etc/asterisk/commented-out.pem\n")
    monkeypatch.setattr(root, "is_installed", lambda _s: True)
    monkeypatch.setattr(root, "asterisk_root", lambda _s: tmp_path / "root")
    now = datetime.now(UTC)
    [soon] = doctor.check_certificates(settings, now)
    [expired] = doctor.check_certificates(settings, now + timedelta(days=11))
    assert soon.level == WARN and "expires on" in soon.message
    assert expired.level == FAIL and "expired on" in expired.message and "renew" in expired.fix
    assert doctor.check_certificates(settings, now - timedelta(days=60))[0].level == OK


def test_no_tls_configured_is_said_plainly(settings):
    [finding] = doctor.check_certificates(settings, datetime.now(UTC))
    assert finding.level == OK and finding.message.startswith("no TLS configured")


# ---- disk, clock ------------------------------------------------------------------------------

Usage = namedtuple("Usage", "total used free")


@pytest.mark.parametrize(("free", "level"), [(200 << 30, OK), (20 << 30, WARN), (512 << 20, FAIL)])
def test_disk_space_for_the_state_dir_and_recordings(settings, monkeypatch, free, level):
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: Usage(500 << 30, (500 << 30) - free, free))
    findings = doctor.check_disk(settings)
    assert [f.message.split(":")[0] for f in findings] == ["state dir", "recordings"]
    assert _levels(findings) == [level, level]


def test_clock_reports_the_time_zones_it_finds(settings, monkeypatch):
    now = datetime(2026, 12, 7, 0, 30, tzinfo=UTC)
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    city = doctor.check_clock(settings, now)
    assert city[:2] == [doctor.Finding(OK, "clock", "deadlines counted in Asia/Shanghai (policy.yaml): now 2026-12-07 08:30"),
                        doctor.Finding(OK, "clock", "system time zone Asia/Shanghai")]
    monkeypatch.setenv("TZ", "Etc/UTC")
    other = doctor.check_clock(settings, now)[1]
    assert other.level == WARN and other.message.startswith("system time zone is Etc/UTC")
    assert "timedatectl set-timezone Asia/Shanghai" in other.fix


# ---- database ---------------------------------------------------------------------------------

def test_database_at_the_head_revision(settings, db_url):
    [finding] = doctor.check_database(settings.model_copy(update={"database_url": db_url}), datetime.now(UTC))[:1]
    assert finding.level == OK and "at the head revision" in finding.message


def test_database_behind_or_missing_fails_and_creates_nothing(settings, tmp_path):
    from ticketing.store import upgrade

    missing = doctor.check_database(settings, datetime.now(UTC))
    assert _levels(missing) == [FAIL] and "callcenter db upgrade" in missing[0].fix
    assert not (settings.state_dir / "callcenter.db").exists()  # the doctor changes nothing
    old = f"sqlite:///{tmp_path / 'old.db'}"
    from alembic.script import ScriptDirectory

    from ticketing.store import alembic_config

    first = list(ScriptDirectory.from_config(alembic_config(old)).walk_revisions())[-1].revision
    upgrade(old, first)
    [behind] = doctor.check_database(settings.model_copy(update={"database_url": old}), datetime.now(UTC))
    assert behind.level == FAIL and f"at revision {first}" in behind.message and "then restart" in behind.fix


def test_unreachable_database_is_a_failure_with_the_password_hidden(settings):
    url = "postgresql://hotline:s3cret@127.0.0.1:1/nowhere"
    [finding] = doctor.check_database(settings.model_copy(update={"database_url": url}), datetime.now(UTC))
    assert finding.level == FAIL and "not reachable" in finding.message and "s3cret" not in finding.message


# ---- the command ------------------------------------------------------------------------------

def test_doctor_prints_every_check_and_exits_1_on_a_failure(settings, monkeypatch):
    from callcenter import cli

    monkeypatch.setattr("callcenter.ops.cli.get_settings", lambda: settings)
    result = CliRunner().invoke(cli.main, ["doctor"])
    assert result.exit_code == 1  # a fresh state dir: no Asterisk, no database
    findings = [line.split() for line in result.output.splitlines() if line.split()[0] in (OK, WARN, FAIL)]
    assert {f[1] for f in findings} == {"config", "calendar", "asterisk", "tls", "disk", "clock", "database"}
    assert "FAIL  asterisk  not installed" in result.output and "fix: `callcenter asterisk install`" in result.output
    fails = sum(f[0] == FAIL for f in findings)
    assert result.output.splitlines()[-1].startswith(f"{len(findings)} checks: {fails} FAIL")


def test_a_check_that_cannot_run_is_reported_and_the_others_still_run(settings, monkeypatch):
    monkeypatch.setattr(doctor, "check_disk", lambda _s: 1 / 0)
    findings = doctor.run_checks(settings)
    crashed = [f for f in findings if f.check == "disk"]
    assert [(f.level, f.message) for f in crashed] == [(FAIL, "the check itself failed: ZeroDivisionError: division by zero")]
    assert {f.check for f in findings} >= {"config", "database"}
