"""`callcenter doctor`: is this install fit to take calls? Each check says OK, WARN or FAIL and, when
not OK, what to do. The checks reuse the project's own loaders and probes (config files through
their schemas, the calendar's year sources, Asterisk's CLI and AMI, Alembic's head); none of them
changes anything, and a check that cannot run is itself a finding, never a crash."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from callcenter.settings import Settings

OK, WARN, FAIL = "OK", "WARN", "FAIL"
CITY_TIMEZONE = "Asia/Shanghai"
ASTERISK_MAJOR = "22"
# what the shipped dialplan and call control use (asterisk/extensions*.conf, callcenter/callcontrol/)
REQUIRED_MODULES = ("chan_pjsip", "res_pjsip", "res_agi", "app_queue", "app_dial", "app_mixmonitor",
                    "app_confbridge", "res_musiconhold", "pbx_config", "func_db")
DISK_WARN_FRACTION = 0.10
CERT_WARN_DAYS = 30
CLOCK_SKEW_WARN = timedelta(seconds=5)
_TIME_SYNC_DAEMONS = ("chronyd", "ntpd", "systemd-timesyn", "openntpd", "ntpsec")
_CERT_OPTION = re.compile(r"^\s*(?:cert_file|tlscertfile)\s*=>?\s*(\S+)", re.M | re.I)


@dataclass(frozen=True)
class Finding:
    level: str
    check: str
    message: str
    fix: str = ""


def _ok(check: str, message: str) -> Finding:
    return Finding(OK, check, message)


# --------------------------------------------------------------------------------------------
# configuration files, through the loaders the hotline itself uses


def check_config(settings: Settings) -> list[Finding]:
    from callcenter.pbx.render import load_operators, load_phone_routes
    from ticketing.assessment import ASSESSMENT_FILE, load_assessment
    from ticketing.calendar import CalendarOverrides
    from ticketing.cityconfig import CityConfig
    from ticketing.policy import CALENDAR_OVERRIDES_FILE, load_policy

    config = Path(settings.config_dir)
    loaders: list[tuple[str, Callable[[], object]]] = [
        ("policy.yaml", lambda: load_policy(config)),
        (CALENDAR_OVERRIDES_FILE, lambda: CalendarOverrides.load(config / CALENDAR_OVERRIDES_FILE)),
        ("units.yaml, categories.yaml", lambda: CityConfig.load(config)),
        (ASSESSMENT_FILE, lambda: load_assessment(config)),
        ("operators.yaml", lambda: load_operators(settings)),
        ("phone_routes.yaml", lambda: load_phone_routes(settings)),
    ]
    findings = []
    for name, load in loaders:
        try:
            load()
        except Exception as exc:  # each loader has its own error type; all say file and field
            findings.append(Finding(FAIL, "config", f"{config}/{name}: {exc}",
                                    f"correct {name} (the hotline will not start with it)"))
        else:
            findings.append(_ok("config", f"{name} valid"))
    findings.append(_check_flows())
    return findings


def _check_flows() -> Finding:
    from ivr_flows import PROMPTS_PATH, flow_files
    from ivr_flows.actions import KNOWN_ACTIONS
    from ivr_flows.check import check_flow
    from ivr_flows.engine import load_flow, load_prompts

    try:
        prompts = set(load_prompts(PROMPTS_PATH))
        problems = [f"{path.name}: {p}" for path in flow_files()
                    for p in check_flow(load_flow(path), set(KNOWN_ACTIONS), prompts)]
    except (OSError, ValueError) as exc:
        problems = [str(exc)]
    if problems:
        return Finding(FAIL, "config", "voice menus: " + "; ".join(problems[:5]), "`callcenter ivr check` lists them all")
    return _ok("config", "voice menus (ivr_flows/) valid")


# --------------------------------------------------------------------------------------------
# calendar coverage (T1)


def check_calendar(settings: Settings, now: datetime) -> list[Finding]:
    from ticketing.calendar import YearSource, calendar_status
    from ticketing.policy import load_policy, load_work_calendar

    try:
        policy = load_policy(settings.config_dir)
        calendar = load_work_calendar(settings.config_dir, policy)
    except Exception as exc:
        return [Finding(FAIL, "calendar", f"cannot load the calendar: {exc}", "fix the configuration (above)")]
    today = now.astimezone(ZoneInfo(policy.timezone)).date()
    status = calendar_status(calendar, today, policy.calendar_warning_from)
    this_year, next_year = calendar.year_source(today.year), calendar.year_source(today.year + 1)
    fix = ("enter the State Council's arrangement: `callcenter calendar set {year} --holiday ... "
           "--workday ...` (README: Each November)")
    if this_year == YearSource.PROVISIONAL:
        return [Finding(FAIL, "calendar", f"{today.year} (this year) is provisional: deadlines are counted "
                        "on statutory holidays only", fix.format(year=today.year))]
    if status.missing_year == today.year + 1:
        return [Finding(WARN, "calendar", f"{today.year} {this_year.value}, {today.year + 1} provisional: "
                        "deadlines falling next year are provisional (暂定)", fix.format(year=today.year + 1))]
    note = "" if next_year != YearSource.PROVISIONAL else " (due: the notice usually comes in early November)"
    return [_ok("calendar", f"{today.year} {this_year.value}, {today.year + 1} {next_year.value}{note}")]


# --------------------------------------------------------------------------------------------
# Asterisk: version, running, modules, AMI login


def check_asterisk(settings: Settings) -> list[Finding]:
    from callcenter.pbx.credentials import ami_secret
    from callcenter.pbx.process import ami_login, cli, version
    from callcenter.pbx.root import AsteriskNotRunning, ProvisionError, is_installed

    if not is_installed(settings):
        return [Finding(FAIL, "asterisk", "not installed", "`callcenter asterisk install` (as root)")]
    findings = []
    ver = version(settings)
    if re.search(rf"\b{ASTERISK_MAJOR}\.", ver):
        findings.append(_ok("asterisk", ver))
    else:
        findings.append(Finding(WARN, "asterisk", f"version {ver or 'unknown'}; the project is built and tested on "
                                f"Asterisk {ASTERISK_MAJOR}", "reinstall with `callcenter asterisk install`"))
    start_fix = "`systemctl start callcenter-asterisk` (or `callcenter asterisk start` without systemd)"
    reachable, logged_in, detail = ami_login(settings.ami_host, settings.ami_port, settings.ami_username,
                                             ami_secret(settings))
    try:
        loaded = {line.split()[0].removesuffix(".so") for line in cli(settings, "module show").splitlines()[1:]
                  if line.strip() and not line[0].isspace()}
    except (ProvisionError, OSError, subprocess.SubprocessError) as exc:
        if isinstance(exc, AsteriskNotRunning) and not reachable:
            findings.append(Finding(WARN, "asterisk", "not running: no calls are answered", start_fix))
            return findings
        loaded = None  # e.g. not root: chroot is refused, though AMI answers
        findings.append(Finding(WARN, "asterisk", f"modules not checked ({exc})", "run doctor as root"))
    if loaded is not None:
        missing = [m for m in REQUIRED_MODULES if m not in loaded]
        if missing:
            findings.append(Finding(FAIL, "asterisk", f"modules not loaded: {', '.join(missing)}",
                                    "check modules.conf and the Asterisk log; `callcenter asterisk install` "
                                    "rewrites the shipped configuration"))
        else:
            findings.append(_ok("asterisk", f"running, {len(REQUIRED_MODULES)} required modules loaded"))
    if logged_in:
        findings.append(_ok("asterisk", f"AMI login at {settings.ami_host}:{settings.ami_port}"))
    elif reachable:
        findings.append(Finding(FAIL, "asterisk", f"AMI refuses the hotline's login: {detail}",
                                "`callcenter asterisk install` writes manager.conf with the secret, then restart "
                                "Asterisk"))
    else:
        findings.append(Finding(WARN if loaded is None else FAIL, "asterisk", f"AMI not reachable: {detail}",
                                start_fix))
    return findings


# --------------------------------------------------------------------------------------------
# certificates


def check_certificates(settings: Settings, now: datetime) -> list[Finding]:
    from callcenter.pbx.root import host_path, is_installed

    certs: list[tuple[str, str]] = []
    if is_installed(settings):
        for conf in ("/etc/asterisk/pjsip.conf", "/etc/asterisk/http.conf"):
            path = host_path(settings, conf)
            text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
            certs += [(conf, c) for c in _CERT_OPTION.findall(re.sub(r";.*", "", text))]
    findings = []
    if not certs:
        findings.append(_ok("tls", "no TLS configured (SIP over UDP, AMI and API on "
                            f"{settings.ami_host} / {settings.api_host}): no certificates to check"))
    for conf, cert in certs:
        findings.append(_check_cert(host_path(settings, cert), f"{conf}: {cert}", now))
    if settings.api_host not in ("127.0.0.1", "::1", "localhost"):
        findings.append(Finding(WARN, "tls", f"the API listens on {settings.api_host} in plain HTTP",
                                "keep CALLCENTER_API_HOST=127.0.0.1 behind a TLS reverse proxy"))
    return findings


def _check_cert(path: Path, label: str, now: datetime) -> Finding:
    if not path.exists():
        return Finding(FAIL, "tls", f"{label} is missing", "install the certificate or remove the option")
    if shutil.which("openssl") is None:
        return Finding(WARN, "tls", f"{label}: expiry not checked (no openssl)", "apt-get install openssl")
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        return Finding(FAIL, "tls", f"{label}: not a PEM certificate", "replace it")
    end = datetime.strptime(out.stdout.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    if end <= now:
        return Finding(FAIL, "tls", f"{label} expired on {end:%Y-%m-%d}", "renew it and restart Asterisk")
    if end - now < timedelta(days=CERT_WARN_DAYS):
        return Finding(WARN, "tls", f"{label} expires on {end:%Y-%m-%d}", "renew it and restart Asterisk")
    return _ok("tls", f"{label} valid until {end:%Y-%m-%d}")


# --------------------------------------------------------------------------------------------
# disk, clock and time zone


def check_disk(settings: Settings) -> list[Finding]:
    from callcenter.ops.health import on_disk
    from callcenter.pbx.root import recordings_dir

    findings = []
    for label, path in (("state dir", Path(settings.state_dir)), ("recordings", recordings_dir(settings))):
        existing = on_disk(path)
        usage = shutil.disk_usage(existing)
        free = f"{usage.free / (1 << 30):.1f} GiB free of {usage.total / (1 << 30):.1f} GiB at {existing}"
        # the bound below which /readyz is unready (CALLCENTER_RECORDINGS_MIN_FREE_MB)
        if usage.free < settings.recordings_min_free_mb << 20:
            findings.append(Finding(FAIL, "disk", f"{label}: {free}", "free space or move the state dir"))
        elif usage.free < DISK_WARN_FRACTION * usage.total:
            findings.append(Finding(WARN, "disk", f"{label}: {free}", "free space soon (recordings grow daily)"))
        else:
            findings.append(_ok("disk", f"{label}: {free}"))
    return findings


def system_timezone() -> str:
    """The host's time zone name as configured (TZ, /etc/timezone, /etc/localtime's link)."""
    if os.environ.get("TZ"):
        return os.environ["TZ"].lstrip(":")
    with_file = Path("/etc/timezone")
    if with_file.exists():
        return with_file.read_text(encoding="utf-8").strip()
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        return str(Path(os.readlink(localtime))).split("zoneinfo/", 1)[-1]
    return "UTC (no /etc/localtime)"


def _time_sync() -> tuple[bool | None, str]:
    """(synchronised?, how we know). None: cannot tell."""
    if shutil.which("timedatectl") and Path("/run/systemd/system").is_dir():
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.strip() == "yes", "timedatectl NTPSynchronized=" + out.stdout.strip()
    for proc in Path("/proc").iterdir():
        try:
            comm = (proc / "comm").read_text().strip() if proc.name.isdigit() else ""
        except OSError:
            continue
        if comm in _TIME_SYNC_DAEMONS:
            return True, f"{comm} runs"
    return None, "no time synchronisation daemon found (chrony, ntpd, systemd-timesyncd)"


def check_clock(settings: Settings, now: datetime) -> list[Finding]:
    from ticketing.policy import load_policy

    findings = []
    try:
        policy_tz = load_policy(settings.config_dir).timezone
    except Exception:
        policy_tz = settings.timezone
    local = now.astimezone(ZoneInfo(policy_tz))
    if policy_tz == CITY_TIMEZONE:
        findings.append(_ok("clock", f"deadlines counted in {policy_tz} (policy.yaml): now {local:%Y-%m-%d %H:%M}"))
    else:
        findings.append(Finding(WARN, "clock", f"policy.yaml timezone is {policy_tz}, the city's is {CITY_TIMEZONE}",
                                f"set `timezone: {CITY_TIMEZONE}` in config/policy.yaml"))
    system_tz = system_timezone()
    if system_tz == CITY_TIMEZONE:
        findings.append(_ok("clock", f"system time zone {system_tz}"))
    else:
        findings.append(Finding(WARN, "clock", f"system time zone is {system_tz}: the hotline counts in {policy_tz} "
                                "anyway, but system logs and Asterisk's log show another local time",
                                f"timedatectl set-timezone {CITY_TIMEZONE} (or link /etc/localtime)"))
    synced, how = _time_sync()
    if synced:
        findings.append(_ok("clock", f"synchronised ({how})"))
    else:
        findings.append(Finding(WARN, "clock", f"clock not known to be synchronised: {how}; deadlines and the "
                                "audit record take their time from it", "apt-get install chrony"))
    return findings


# --------------------------------------------------------------------------------------------
# database


def check_database(settings: Settings, now: datetime) -> list[Finding]:
    from alembic.script import ScriptDirectory
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from ticketing.store import alembic_config, current_revision, make_engine

    url = settings.effective_database_url
    shown = make_url(url).render_as_string(hide_password=True)
    database = make_url(url).database
    if make_url(url).get_backend_name() == "sqlite" and database and not Path(database).exists():
        # connecting would create an empty file: the doctor changes nothing
        return [Finding(FAIL, "database", f"{shown}: no database file", "`callcenter db upgrade`")]
    try:
        current = current_revision(url)
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        return [Finding(FAIL, "database", f"{shown} not reachable: {reason}",
                        "start PostgreSQL / check CALLCENTER_DATABASE_URL")]
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    if current is None:
        findings = [Finding(FAIL, "database", f"{shown} has no schema", "`callcenter db upgrade`")]
    elif current != head:
        findings = [Finding(FAIL, "database", f"{shown} at revision {current}, this release needs {head}",
                            "`callcenter db upgrade`, then restart the hotline")]
    else:
        findings = [_ok("database", f"{shown} reachable, at the head revision {head}")]
    if make_url(url).get_backend_name() == "postgresql":
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                server_now = conn.execute(text("SELECT now()")).scalar_one()
        finally:
            engine.dispose()
        skew = abs(server_now - datetime.now(UTC))
        if skew > CLOCK_SKEW_WARN:
            findings.append(Finding(WARN, "database", f"the database server's clock is {skew.total_seconds():.0f} s "
                                    "off this machine's", "synchronise both clocks (chrony)"))
    return findings


# --------------------------------------------------------------------------------------------


def run_checks(settings: Settings, now: datetime | None = None) -> list[Finding]:
    now = now or datetime.now(UTC)
    checks: list[tuple[str, Callable[[], list[Finding]]]] = [
        ("config", lambda: check_config(settings)),
        ("calendar", lambda: check_calendar(settings, now)),
        ("asterisk", lambda: check_asterisk(settings)),
        ("tls", lambda: check_certificates(settings, now)),
        ("disk", lambda: check_disk(settings)),
        ("clock", lambda: check_clock(settings, now)),
        ("database", lambda: check_database(settings, now)),
    ]
    findings = []
    for name, check in checks:
        try:
            findings += check()
        except Exception as exc:  # a check that cannot run is a finding: the others still run
            findings.append(Finding(FAIL, name, f"the check itself failed: {type(exc).__name__}: {exc}",
                                    "report this with the output of `callcenter -v doctor`"))
    return findings


def format_finding(f: Finding) -> str:
    line = f"{f.level:<4}  {f.check:<8}  {f.message}"
    return line + (f"\n{'':16}fix: {f.fix}" if f.fix and f.level != OK else "")


__all__ = ["FAIL", "OK", "WARN", "Finding", "format_finding", "run_checks", "system_timezone"]
