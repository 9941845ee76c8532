"""systemd units for running the hotline for real: render them from the templates in
``callcenter/ops/units/``, install and enable them, and summarise their state.

Three units (the hotline is one process: API, FastAGI, AMI link and the leader-elected scheduler):

- ``callcenter-asterisk.service`` (chroot install only): Asterisk in its Debian sid root. systemd
  starts it as root because entering the root needs chroot (CAP_SYS_CHROOT); Asterisk switches to the
  root's own ``asterisk`` user at once (``-U``/``-G``), as `callcenter asterisk start` does. On a host
  install the distribution's ``asterisk.service`` is used instead.
- ``callcenter-hotline.service``: ``callcenter run --no-asterisk`` as an unprivileged user.
- ``callcenter-watchdog.service``: ``callcenter agi watchdog`` as the same user, outside the hotline's
  process, so a frozen voice menu server strands no caller (callcenter/agi_watchdog.py).
"""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template

from callcenter import logrotate
from callcenter.pbx.process import SYSTEMD_UNITS
from callcenter.pbx.root import ProvisionError, asterisk_root, host_path, install_mode, is_installed, root_ids
from callcenter.settings import PROJECT_ROOT, Settings

TEMPLATES = Path(__file__).resolve().parent / "units"
UNIT_DIR = "etc/systemd/system"
LOGROTATE_FILE = "etc/logrotate.d/callcenter"
HOTLINE_UNIT = "callcenter-hotline.service"
WATCHDOG_UNIT = "callcenter-watchdog.service"
ASTERISK_UNIT = SYSTEMD_UNITS["chroot"]
HOST_ASTERISK_UNIT = SYSTEMD_UNITS["host"]  # the distribution package's own unit (host install)
DEFAULT_USER = "callcenter"
# what `service status` shows of each unit (systemctl show -p ...)
STATUS_PROPERTIES = ("LoadState", "ActiveState", "SubState", "UnitFileState", "MainPID", "NRestarts",
                     "ExecMainStartTimestamp", "Result")
# the operators' SIP passwords: the hotline never needs them. (secrets.env it does: the AMI secret
# and database URL are in its environment anyway, and the CLI run as the service user reads them.)
_KEEP_ROOT_OWNED = {"sip-secrets.json"}


@dataclass(frozen=True)
class Unit:
    name: str
    text: str


def systemd_running() -> bool:
    """systemd is PID 1 (not so in containers and CI)."""
    return Path("/run/systemd/system").is_dir()


def callcenter_executable() -> Path:
    """The `callcenter` script of the environment we run in (the venv's, not a PATH lookup)."""
    candidate = Path(sys.prefix) / "bin" / "callcenter"
    if candidate.exists():
        return candidate.absolute()
    found = shutil.which("callcenter")
    if found is None:
        raise ProvisionError("no `callcenter` command found: install the project first (pip install -e .)")
    return Path(found).absolute()


def _primary_group(user: str) -> str:
    """The user's own group; a user not made yet gets one of its name (useradd --user-group)."""
    try:
        return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    except KeyError:
        return user


def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def render_units(settings: Settings, user: str = DEFAULT_USER, executable: Path | None = None) -> list[Unit]:
    """The unit files for this install, Asterisk's first. Asterisk must be installed (its root and
    user ids go into the units)."""
    if not is_installed(settings):
        raise ProvisionError("Asterisk is not installed: run `callcenter asterisk install` first")
    state_dir = Path(settings.state_dir).absolute()
    values = {
        "project_root": str(PROJECT_ROOT),
        "state_dir": str(state_dir),
        "config_dir": str(Path(settings.config_dir).absolute()),
        "callcenter": str(executable or callcenter_executable()),
        "user": user,
        "group": _primary_group(user),
    }
    units = []
    if install_mode(settings) == "host":
        values["asterisk_unit"] = HOST_ASTERISK_UNIT
        values["asterisk_gid"] = "asterisk"
    else:
        uid, gid = root_ids(settings)
        values.update(asterisk_unit=ASTERISK_UNIT, asterisk_uid=str(uid), asterisk_gid=str(gid),
                      asterisk_root=str(asterisk_root(settings)),
                      asterisk_run_dir=str(host_path(settings, "/var/run/asterisk")))
        units.append(Unit(ASTERISK_UNIT, _template(ASTERISK_UNIT).substitute(values)))
    units += [Unit(name, _template(name).substitute(values)) for name in (HOTLINE_UNIT, WATCHDOG_UNIT)]
    return units


def _blocking_component(path: Path) -> Path | None:
    """The first directory on the way to `path` that others cannot enter (or `path` itself if others
    cannot read it): the service user is not root and may not be in its group."""
    path = path.absolute()
    for part in [*reversed(path.parents), path]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return part
        needed = 0o001 if part != path or part.is_dir() else 0o004
        if not mode & needed:
            return part
    return None


def access_problems(settings: Settings, executable: Path | None = None) -> list[str]:
    """What the unprivileged service user could not reach: the project, its virtualenv's Python (a
    venv made from a Python under /root, e.g. pyenv, is unusable), the state and config dirs."""
    script = executable or callcenter_executable()
    interpreter = Path(script.read_text(encoding="utf-8", errors="replace").splitlines()[0][2:].strip())
    wanted = {"the project": PROJECT_ROOT, "the `callcenter` script": script,
              "its Python": interpreter.resolve(), "the state dir": Path(settings.state_dir).parent,
              "the config dir": Path(settings.config_dir)}
    problems = []
    for what, path in wanted.items():
        blocking = _blocking_component(path)
        if blocking is not None:
            problems.append(f"{what} ({path}): others cannot enter or read {blocking}")
    return problems


@dataclass
class InstallReport:
    unit_dir: Path
    written: list[Path]
    steps: list[str]


def install_units(settings: Settings, *, user: str = DEFAULT_USER, prefix: Path = Path("/"),
                  executable: Path | None = None) -> InstallReport:
    """Write the units under ``prefix``/etc/systemd/system. Into the real system (prefix ``/``) also:
    create the service user, give it the state files it writes, and enable the units (when systemd
    runs). With another prefix only the files are written (for packaging, or to look at them)."""
    units = render_units(settings, user, executable)
    real = Path(prefix).resolve() == Path("/")
    problems = access_problems(settings, executable)
    if problems and real:
        raise ProvisionError(f"user {user} could not run the hotline: " + "; ".join(problems) +
                             ". Clone into a directory others can read (e.g. /opt/callcenter) and make .venv "
                             "with the system's python3")
    unit_dir = Path(prefix) / UNIT_DIR
    unit_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for unit in units:
        path = unit_dir / unit.name
        path.write_text(unit.text, encoding="utf-8")
        path.chmod(0o644)
        written.append(path)
    report = InstallReport(unit_dir, written, [f"warning: {p}" for p in problems])
    # the units' logs rotate with the system's logrotate (callcenter/logrotate.py knows the paths)
    rotate = Path(prefix) / LOGROTATE_FILE
    rotate.parent.mkdir(parents=True, exist_ok=True)
    rotate.write_text(logrotate.render(settings), encoding="utf-8")
    report.steps.append(f"wrote {rotate}")
    if not real:
        report.steps.append(f"prefix {prefix}: files only (no user created, nothing enabled)")
        return report
    if os.geteuid() != 0:
        raise ProvisionError("installing into /etc/systemd/system needs root (or use --prefix DIR)")
    _ensure_user(user, Path(settings.state_dir), report.steps)
    hand_over_state(settings, user, report.steps)
    if not systemd_running():
        report.steps.append("systemd is not running on this machine (not PID 1): units written, not enabled")
        return report
    for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", *(u.name for u in units)]):
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise ProvisionError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    report.steps.append(f"enabled {', '.join(u.name for u in units)} (start them with `systemctl start "
                        f"{HOTLINE_UNIT} {WATCHDOG_UNIT}` once nothing else runs the hotline)")
    return report


def _ensure_user(user: str, home: Path, steps: list[str]) -> None:
    try:
        pwd.getpwnam(user)
        return
    except KeyError:
        pass
    argv = ["useradd", "--system", "--user-group", "--home-dir", str(home.absolute()), "--no-create-home",
            "--shell", "/usr/sbin/nologin", user]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise ProvisionError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    steps.append(f"created the system user {user}")


def hand_over_state(settings: Settings, user: str, steps: list[str]) -> None:
    """The service user owns what the hotline writes and reads: the state dir and its files (store,
    audit key and checkpoints, secrets.env), the config dir (calendar overrides). The SIP passwords
    stay root's, the Asterisk root stays as Asterisk's install made it."""
    uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
    state_dir = Path(settings.state_dir).absolute()
    skip = {asterisk_root(settings).absolute()}
    targets = [state_dir, Path(settings.config_dir).absolute()]
    targets += [p for p in sorted(state_dir.iterdir()) if p.is_file() and p.name not in _KEEP_ROOT_OWNED]
    targets += sorted(Path(settings.config_dir).absolute().glob("*.yaml"))
    changed = 0
    for path in targets:
        if path in skip or path.is_symlink():
            continue
        st = path.stat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
            changed += 1
    steps.append(f"{user} owns the state dir {state_dir} and the hotline's files in it ({changed} changed)")


def unit_names(settings: Settings) -> list[str]:
    """The units `status` reports on for this install."""
    return [SYSTEMD_UNITS[install_mode(settings)], HOTLINE_UNIT, WATCHDOG_UNIT]


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show` output (KEY=VALUE lines) as a dict."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def unit_status(name: str) -> dict[str, str]:
    result = subprocess.run(["systemctl", "show", "-p", ",".join(STATUS_PROPERTIES), name],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return {"LoadState": "error", "Result": result.stderr.strip()}
    return parse_show(result.stdout)


def describe(name: str, props: dict[str, str]) -> str:
    """One line for a unit: active (running) since ..., pid, restarts; enabled or not."""
    state = f"{props.get('ActiveState', '?')} ({props.get('SubState', '?')})"
    if props.get("LoadState") != "loaded":
        return f"{name}: not installed ({props.get('LoadState', '?')}) — run `callcenter service install`"
    parts = [f"{name}: {state}", props.get("UnitFileState", "?")]
    if props.get("MainPID", "0") != "0":
        parts.append(f"pid {props['MainPID']}")
    if props.get("ExecMainStartTimestamp"):
        parts.append(f"since {props['ExecMainStartTimestamp']}")
    if props.get("NRestarts", "0") != "0":
        parts.append(f"restarted {props['NRestarts']}x")
    if props.get("Result", "success") != "success":
        parts.append(f"last result {props['Result']}")
    return ", ".join(parts)


__all__ = ["ASTERISK_UNIT", "DEFAULT_USER", "HOTLINE_UNIT", "InstallReport", "Unit", "access_problems", "describe",
           "hand_over_state", "install_units", "parse_show", "render_units", "systemd_running", "unit_names", "unit_status"]
