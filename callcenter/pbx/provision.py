"""Install, configure, start and stop the hotline's Asterisk.

`install` is idempotent: it gets Asterisk (the distribution's package if apt offers one, else a
Debian sid root built with mmdebstrap), writes the configuration rendered from ``asterisk/*.conf``
(placeholders ``@@NAME@@``; Asterisk uses ``${}`` itself), generates secrets once into the state
directory, renders the Mandarin prompts and fixes ownership. A second run changes nothing and says so.

Asterisk never runs as root: it parses network input (SIP, RTP, AMI) and runs dialplan that other
parts of the project write, so it is started with ``-U asterisk -G asterisk`` (and the same in
asterisk.conf) and owns only its own state, log, spool and run directories.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from callcenter.pbx.names import operator_endpoint, operator_interface
from callcenter.pbx.prompts import PromptReport, render_prompts
from callcenter.pbx.root import (
    ASTERISK_BIN,
    RECORDINGS_DIR,
    ROOT_ENV,
    STATE_FILE,
    AsteriskNotRunning,
    ProvisionError,
    asterisk_root,
    ensure_tools,
    host_path,
    in_root,
    install_mode,
    install_state,
    is_installed,
    recordings_dir,
    root_ids,
    run_in_root,
)
from callcenter.settings import PROJECT_ROOT, Settings

__all__ = [
    "AsteriskNotRunning", "InstallReport", "Operator", "PhoneRoutes", "ProvisionError", "RECORDINGS_DIR",
    "ami_secret", "load_phone_routes", "asterisk_root", "cli", "host_path", "install", "is_running", "load_operators",
    "recordings_dir", "render_configs", "render_template", "running_pids", "sip_passwords", "start", "status", "stop",
]

TEMPLATE_DIR = PROJECT_ROOT / "asterisk"
ETC = "/etc/asterisk"
MOH_DIR = "/usr/share/asterisk/moh"
MOH_TONE = "callcenter-hold-tone.wav"
SID_MIRROR = "http://deb.debian.org/debian"
SID_PACKAGES = "asterisk,asterisk-modules,asterisk-config"
SECRETS_ENV = "secrets.env"
SIP_SECRETS = "sip-secrets.json"
AMI_SECRET_VAR = "CALLCENTER_AMI_SECRET"
SIP_PASSWORD_VAR = "CALLCENTER_SIP_PASSWORD_{id}"  # e.g. CALLCENTER_SIP_PASSWORD_8001
# Package sample configs that would define demo users/contexts/listeners next to ours; moved aside.
SAMPLES_MOVED_ASIDE = (
    "extensions.ael", "extensions.lua", "extensions_minivm.conf", "users.conf", "iax.conf",
    "iaxprov.conf", "ari.conf",
)
SAMPLES_DIR = "/etc/asterisk/package-samples"
# Configuration that only a restart applies (a `core reload` is enough for the rest).
RESTART_CONFIGS = {"asterisk.conf", "modules.conf", "logger.conf"}
# Directories Asterisk writes to, owned by the asterisk user.
ASTERISK_DIRS = (
    "/var/lib/asterisk", "/var/log/asterisk", "/var/spool/asterisk", "/var/cache/asterisk",
    "/var/run/asterisk", RECORDINGS_DIR,
)
START_TIMEOUT = 20.0

_PLACEHOLDER = re.compile(r"@@([A-Z0-9_]+)@@")
_SAFE_SECRET = re.compile(r"^[A-Za-z0-9._~+/=-]{12,128}$")  # nothing Asterisk's parser treats specially
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")


# --------------------------------------------------------------------------------------------
# operators


@dataclass(frozen=True)
class Operator:
    """A front-desk operator's softphone account (config/operators.yaml)."""

    id: str  # extension, e.g. "8001"
    name: str

    @property
    def endpoint(self) -> str:
        return operator_endpoint(self.id)

    @property
    def interface(self) -> str:
        """What AMI QueueAdd / Dial take for this operator's phone."""
        return operator_interface(self.id)


def load_operators(settings: Settings) -> list[Operator]:
    """Operators of config/operators.yaml (a list of {id, name}; an `operators:` key is accepted too)."""
    path = Path(settings.config_dir) / "operators.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProvisionError(f"{path} is missing: list the operators as - {{id: \"8001\", name: ...}}") from None
    if isinstance(data, dict):
        data = data.get("operators")
    if not isinstance(data, list):
        raise ProvisionError(f"{path}: expected a list of {{id, name}}")
    operators: list[Operator] = []
    for entry in data:
        if not isinstance(entry, dict) or "id" not in entry:
            raise ProvisionError(f"{path}: each operator needs an id: {entry!r}")
        op_id, name = str(entry["id"]), str(entry.get("name") or "")
        if not re.fullmatch(r"[0-9]{2,8}", op_id):
            raise ProvisionError(f"{path}: operator id {op_id!r} must be 2-8 digits (it is an extension)")
        # the name goes into a SIP callerid line of pjsip.conf
        if any(c in name for c in '";\r\n<>@\\'):
            raise ProvisionError(f"{path}: operator {op_id} name {name!r} contains a forbidden character")
        if any(op.id == op_id for op in operators):
            raise ProvisionError(f"{path}: operator id {op_id} appears twice")
        operators.append(Operator(op_id, name))
    return operators


# --------------------------------------------------------------------------------------------
# member units' duty phones (config/phone_routes.yaml)

_ENDPOINT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class PhoneRoutes:
    """How the dialplan context [unit-phones] reaches a roster number: a number in ``routes`` rings a
    local SIP endpoint (test phones provisioned like operators), any other number ``default``."""

    endpoints: tuple[str, ...] = ()
    routes: dict[str, str] = field(default_factory=dict)  # digits -> endpoint
    default: str = "PJSIP/{number}@trunk"


def dial_digits(number: str) -> str:
    """A roster number as the dialplan dials it: digits only ('0510-87900350' -> '051087900350')."""
    return re.sub(r"[^0-9]", "", number or "")


def load_phone_routes(settings: Settings) -> PhoneRoutes:
    """config/phone_routes.yaml; no file = no test phones, everything to the trunk."""
    path = Path(settings.config_dir) / "phone_routes.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return PhoneRoutes()
    if not isinstance(data, dict):
        raise ProvisionError(f"{path}: expected a mapping with endpoints, routes, default")
    endpoints = tuple(str(e) for e in data.get("endpoints") or ())
    for name in endpoints:
        # rendered into pjsip.conf section names: nothing the parser treats specially
        if not _ENDPOINT_NAME.match(name) or re.fullmatch(r"op[0-9]+", name):
            raise ProvisionError(f"{path}: endpoint name {name!r} must be lower-case letters, digits, '-' "
                                 "and not look like an operator's (opNNNN)")
    routes: dict[str, str] = {}
    for number, endpoint in (data.get("routes") or {}).items():
        digits = dial_digits(str(number))
        if not digits or len(digits) > 20:
            raise ProvisionError(f"{path}: route {number!r} is not a phone number")
        if str(endpoint) not in endpoints:
            raise ProvisionError(f"{path}: route {number} goes to {endpoint!r}, which is not under endpoints")
        routes[digits] = str(endpoint)
    default = str(data.get("default") or PhoneRoutes.default)
    if "{number}" not in default or any(c in default for c in ",;\r\n()&|"):
        raise ProvisionError(f"{path}: default {default!r} must be one dial string containing {{number}}")
    return PhoneRoutes(endpoints=endpoints, routes=routes, default=default)


def _render_unit_phone_routes(routes: PhoneRoutes) -> str:
    lines = []
    for number, endpoint in sorted(routes.routes.items()):
        lines.append(f"exten => {number},1,Set(UNIT_DIAL=PJSIP/{endpoint})")
        lines.append(" same => n,Goto(dial,1)")
    return "\n".join(lines) + "\n" if lines else "; (no routes to local test phones)\n"


# --------------------------------------------------------------------------------------------
# secrets


def _secrets_env_path(settings: Settings) -> Path:
    return Path(settings.state_dir) / SECRETS_ENV


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return values
    for line in lines:
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def ami_secret(settings: Settings) -> str:
    """The AMI secret: from the environment/settings, else from <state_dir>/secrets.env ('' if none yet)."""
    return settings.ami_secret or _read_env_file(_secrets_env_path(settings)).get(AMI_SECRET_VAR, "")


def _write_private(path: Path, content: str) -> bool:
    """Write a 0600 file (atomically, never readable by others even for a moment). True if changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_bytes() if path.exists() else None
    changed = old != content.encode()
    if changed:
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.replace(tmp, path)
    if stat.S_IMODE(path.stat().st_mode) != 0o600:
        os.chmod(path, 0o600)
        changed = True
    return changed


def _check_secret(value: str, what: str) -> str:
    if not _SAFE_SECRET.match(value):
        raise ProvisionError(
            f"{what} must be 12-128 characters of A-Z a-z 0-9 . _ ~ + / = - "
            "(';' and spaces would break Asterisk's config parser)"
        )
    return value


def _ensure_ami_secret(settings: Settings, changes: list[str]) -> str:
    if settings.ami_secret:  # given via the environment (or the settings' own env file)
        return _check_secret(settings.ami_secret, AMI_SECRET_VAR)
    path = _secrets_env_path(settings)
    existing = _read_env_file(path).get(AMI_SECRET_VAR)
    secret = existing or secrets.token_urlsafe(24)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    lines = [line for line in lines if not line.startswith(f"{AMI_SECRET_VAR}=")]
    lines.append(f"{AMI_SECRET_VAR}={secret}")
    if _write_private(path, "\n".join(lines) + "\n"):
        changes.append(f"{'generated the AMI secret into' if existing is None else 'rewrote'} {path} (0600)")
    settings.ami_secret = _check_secret(secret, AMI_SECRET_VAR)  # so this process can log in right away
    return secret


def sip_passwords(settings: Settings) -> dict[str, str]:
    """endpoint name (op8001) -> SIP password, as installed (<state_dir>/sip-secrets.json)."""
    try:
        return json.loads((Path(settings.state_dir) / SIP_SECRETS).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def _ensure_sip_passwords(settings: Settings, operators: list[Operator], changes: list[str],
                          other_endpoints: tuple[str, ...] = ()) -> dict[str, str]:
    path = Path(settings.state_dir) / SIP_SECRETS
    current = sip_passwords(settings)
    wanted: dict[str, str] = {}
    for op in operators:
        given = os.environ.get(SIP_PASSWORD_VAR.format(id=op.id))
        if given:
            wanted[op.endpoint] = _check_secret(given, SIP_PASSWORD_VAR.format(id=op.id))
        elif op.endpoint in current:
            wanted[op.endpoint] = current[op.endpoint]
        else:
            wanted[op.endpoint] = secrets.token_urlsafe(16)
            changes.append(f"generated the SIP password of {op.endpoint}")
    for name in other_endpoints:  # member-unit test phones (config/phone_routes.yaml)
        if name in current:
            wanted[name] = current[name]
        else:
            wanted[name] = secrets.token_urlsafe(16)
            changes.append(f"generated the SIP password of {name}")
    if _write_private(path, json.dumps(wanted, indent=2, sort_keys=True) + "\n"):
        changes.append(f"wrote {path} (0600)")
    return wanted


# --------------------------------------------------------------------------------------------
# templates


def render_template(text: str, values: dict[str, str]) -> str:
    """Replace every @@NAME@@; an unknown name, or anything left looking like one, is an error."""
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise ProvisionError(f"template placeholder @@{name}@@ has no value")
        return str(values[name])

    out = _PLACEHOLDER.sub(replace, text)
    if "@@" in out:
        raise ProvisionError("a template still contains '@@' after rendering")
    return out


def _template_values(settings: Settings, secret: str) -> dict[str, str]:
    for what, value in (("ami_username", settings.ami_username),
                        ("ami_host", settings.ami_host), ("sip_host", settings.sip_host),
                        ("agi_host", settings.agi_host)):
        if not _SAFE_WORD.match(value):
            raise ProvisionError(f"setting {what}={value!r} is not a plain name/address")
    return {
        "AMI_HOST": settings.ami_host,
        "AMI_PORT": str(int(settings.ami_port)),
        "AMI_USERNAME": settings.ami_username,
        "AMI_SECRET": secret,
        "SIP_HOST": settings.sip_host,
        "SIP_PORT": str(int(settings.sip_port)),
        "AGI_HOST": settings.agi_host,
        "AGI_PORT": str(int(settings.agi_port)),
        "RECORDINGS_DIR": RECORDINGS_DIR,
        "MOH_DIR": MOH_DIR,
    }


def render_configs(settings: Settings, secret: str, passwords: dict[str, str],
                   operators: list[Operator] | None = None) -> dict[str, str]:
    """File name in /etc/asterisk -> rendered content, for every ``asterisk/*.conf`` template."""
    operators = load_operators(settings) if operators is None else operators
    values = _template_values(settings, secret)
    block = (TEMPLATE_DIR / "pjsip-operator.conf.in").read_text(encoding="utf-8")
    endpoints = []
    for op in operators:
        if op.endpoint not in passwords:
            raise ProvisionError(f"no SIP password for {op.endpoint}")
        endpoints.append(render_template(block, {
            "OPERATOR_ID": op.id, "OPERATOR_NAME": op.name or op.endpoint,
            "ENDPOINT": op.endpoint, "PASSWORD": _check_secret(passwords[op.endpoint], op.endpoint),
        }))
    values["OPERATOR_ENDPOINTS"] = "".join(endpoints).rstrip("\n") + "\n"
    routes = load_phone_routes(settings)
    unit_block = (TEMPLATE_DIR / "pjsip-unit-phone.conf.in").read_text(encoding="utf-8")
    unit_endpoints = []
    for name in routes.endpoints:
        # a caller that passes only the operators' passwords (a render check) gets no test phones;
        # install always generates theirs
        if name in passwords:
            unit_endpoints.append(render_template(unit_block, {
                "ENDPOINT": name, "PASSWORD": _check_secret(passwords[name], name)}))
    values["UNIT_PHONE_ENDPOINTS"] = "".join(unit_endpoints).rstrip("\n") + "\n"
    values["UNIT_PHONE_ROUTES"] = _render_unit_phone_routes(routes)
    values["UNIT_PHONE_DEFAULT"] = routes.default.replace("{number}", "${EXTEN}")
    return {
        path.name: render_template(path.read_text(encoding="utf-8"), values)
        for path in sorted(TEMPLATE_DIR.glob("*.conf"))
    }


# --------------------------------------------------------------------------------------------
# install


@dataclass
class InstallReport:
    mode: str  # "chroot" (sid root built by mmdebstrap) or "host" (distribution package)
    root: Path
    changes: list[str] = field(default_factory=list)  # what this run did, human readable
    prompts: PromptReport | None = None
    version: str = ""
    reloaded: bool = False
    restarted: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.changes) or bool(self.prompts and self.prompts.changed)

    def summary(self) -> str:
        head = f"Asterisk ({self.version or 'version unknown'}), {self.mode} install at {self.root}"
        if not self.changed:
            return f"{head}: already up to date, nothing changed"
        lines = [f"{head}:"] + [f"  - {c}" for c in self.changes]
        if self.prompts is not None:
            lines.append(f"  - {self.prompts.summary()}")
        return "\n".join(lines)


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """One provisioning/control operation at a time across processes (parallel test sessions)."""
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "asterisk.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _apt_candidate(package: str) -> str | None:
    if shutil.which("apt-cache") is None:
        return None
    result = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
    match = re.search(r"^\s*Candidate:\s*(\S+)", result.stdout, re.M)
    if match and match.group(1) != "(none)":
        return match.group(1)
    return None


def _write_state(settings: Settings, mode: str, root: Path, changes: list[str]) -> None:
    wanted = {"mode": mode, "root": str(root)}
    if install_state(settings) != wanted:
        path = Path(settings.state_dir) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(wanted) + "\n", encoding="utf-8")
        changes.append(f"recorded the install mode ({mode}) in {path}")


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.absolute()).rstrip("/") + "/"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    return [f.split()[1] for f in lines if len(f.split()) > 1 and (f.split()[1] + "/").startswith(prefix)]


def _build_sid_root(settings: Settings, root: Path, changes: list[str]) -> None:
    if os.geteuid() != 0:
        raise ProvisionError(f"building the Asterisk root at {root} needs root (mmdebstrap, chroot)")
    ensure_tools({"mmdebstrap": "mmdebstrap"})
    if root.exists() and any(root.iterdir()):
        raise ProvisionError(f"{root} exists but holds no {ASTERISK_BIN}: move it away and run install again")
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        # a killed build may have left /proc or /dev mounted inside: never delete through a mount
        if _mounts_under(partial):
            raise ProvisionError(f"{partial} (an interrupted build) still has mounts: unmount them, then remove it")
        shutil.rmtree(partial)
    log = Path(settings.state_dir) / "mmdebstrap.log"
    cmd = [
        "mmdebstrap", "--variant=minbase", f"--include={SID_PACKAGES}",
        '--aptopt=APT::Install-Recommends "false"',
        # the mirror's sid Release file can be past its Valid-Until date
        '--aptopt=Acquire::Check-Valid-Until "false"',
        "sid", str(partial), SID_MIRROR,
    ]
    with open(log, "w") as fh:
        result = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if result.returncode != 0 or not (partial / ASTERISK_BIN.lstrip("/")).exists():
        raise ProvisionError(f"mmdebstrap failed (rc={result.returncode}); see {log}")
    if root.exists():
        root.rmdir()  # empty (checked above)
    os.replace(partial, root)  # a root either is complete or does not exist
    changes.append(f"built a Debian sid root with Asterisk at {root} (mmdebstrap, log {log})")


def _ensure_asterisk(settings: Settings, changes: list[str]) -> tuple[str, Path]:
    """Decide the install mode and make sure Asterisk is there. Returns (mode, root)."""
    chroot_root = Path(settings.effective_asterisk_root).absolute()
    if (chroot_root / ASTERISK_BIN.lstrip("/")).exists():
        mode = "chroot"
    elif install_mode(settings) == "host" and Path(ASTERISK_BIN).exists():
        mode = "host"
    elif settings.asterisk_root is None and _apt_candidate("asterisk"):
        if os.geteuid() != 0:
            raise ProvisionError("installing the distribution's asterisk package needs root")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        result = subprocess.run(["apt-get", "install", "-y", "asterisk"], capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise ProvisionError(f"apt-get install asterisk failed: {result.stderr.strip()[-500:]}")
        changes.append("installed the distribution's asterisk package")
        mode = "host"
        _disable_host_service(changes)
    else:
        _build_sid_root(settings, chroot_root, changes)
        mode = "chroot"
    root = Path("/") if mode == "host" else chroot_root
    _write_state(settings, mode, root, changes)
    return mode, root


def _systemd_unit_exists() -> bool:
    if shutil.which("systemctl") is None or not Path("/run/systemd/system").exists():
        return False
    result = subprocess.run(["systemctl", "cat", "asterisk.service"], capture_output=True, text=True)
    return result.returncode == 0


def _disable_host_service(changes: list[str]) -> None:
    """The package starts Asterisk at once, with its sample configuration: stop it until ours is in
    place (`start` starts it again through systemd; the unit stays enabled for boot)."""
    if _systemd_unit_exists():
        subprocess.run(["systemctl", "stop", "asterisk.service"], capture_output=True, text=True)
        changes.append("stopped the package's asterisk.service until the configuration is written")


def _apply_file(path: Path, content: bytes, mode: int, uid: int, gid: int) -> bool:
    """Make `path` hold exactly `content` with mode/owner; True if anything had to change."""
    changed = False
    try:
        same = path.read_bytes() == content
    except FileNotFoundError:
        same = False
    if not same:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        return True
    st = path.stat()
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
        changed = True
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
        changed = True
    return changed


def _ensure_dir(path: Path, mode: int, uid: int, gid: int, enforce_mode: bool = True) -> bool:
    """Directory owned by uid:gid; `mode` on creation (always, if enforce_mode)."""
    changed = False
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)
        changed = True
    st = path.stat()
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
        changed = True
    if enforce_mode and stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
        changed = True
    return changed


def _move_samples_aside(settings: Settings, changes: list[str]) -> None:
    moved = []
    for name in SAMPLES_MOVED_ASIDE:
        src = host_path(settings, f"{ETC}/{name}")
        if src.exists():
            dest_dir = host_path(settings, SAMPLES_DIR)
            dest_dir.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest_dir / name)
            moved.append(name)
    if moved:
        changes.append(f"moved package samples aside to {SAMPLES_DIR}: {', '.join(moved)}")


def _ensure_moh(settings: Settings, changes: list[str]) -> None:
    moh = host_path(settings, MOH_DIR)
    moh.mkdir(parents=True, exist_ok=True)
    tone = moh / MOH_TONE
    others = [p for p in moh.iterdir() if p.is_file() and p.name != MOH_TONE and not p.name.startswith(".")]
    if others:
        if tone.exists():  # the distribution's music arrived: stop mixing our tone into it
            tone.unlink()
            changes.append(f"removed the placeholder hold tone (hold music found in {MOH_DIR})")
        return
    if tone.exists():
        return
    ensure_tools({"sox": "sox"})
    tmp = moh / f".{MOH_TONE}.tmp.wav"
    # soft 0.6 s beep every 3 s: callers hear that they are still connected
    cmd = ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(tmp),
           "synth", "0.6", "sine", "523.25", "vol", "0.15", "fade", "0.05", "0.6", "0.1", "pad", "0", "2.4"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ProvisionError(f"sox could not render the hold tone: {result.stderr.strip()}")
    os.chmod(tmp, 0o644)
    os.replace(tmp, tone)
    changes.append(f"rendered a hold tone into {MOH_DIR} (no hold music installed)")


def _write_configs(settings: Settings, secret: str, passwords: dict[str, str],
                   operators: list[Operator], changes: list[str]) -> set[str]:
    uid, gid = root_ids(settings)
    rendered = render_configs(settings, secret, passwords, operators)
    etc = host_path(settings, ETC)
    changed = set()
    for name, content in rendered.items():
        # 0640 asterisk:asterisk as the Debian package does: manager/pjsip hold secrets
        if _apply_file(etc / name, content.encode("utf-8"), 0o640, uid, gid):
            changed.add(name)
    if changed:
        changes.append(f"wrote {ETC}/: {', '.join(sorted(changed))}")
    return changed


def _ensure_dirs(settings: Settings, changes: list[str]) -> None:
    uid, gid = root_ids(settings)
    fixed = []
    for inside in ASTERISK_DIRS:
        # recordings are personal data: not readable by other users of the machine; the package's
        # own directories keep the modes it gave them
        recordings = inside == RECORDINGS_DIR
        if _ensure_dir(host_path(settings, inside), 0o750 if recordings else 0o755, uid, gid, enforce_mode=recordings):
            fixed.append(inside)
    if fixed:
        changes.append(f"created/owned by asterisk: {', '.join(fixed)}")


def install(settings: Settings) -> InstallReport:
    """Install and configure Asterisk (idempotent). Reloads a running Asterisk whose configuration
    changed (restarts it when asterisk.conf/modules.conf/logger.conf changed)."""
    with _locked(settings):
        changes: list[str] = []
        mode, root = _ensure_asterisk(settings, changes)
        report = InstallReport(mode=mode, root=root, changes=changes)
        operators = load_operators(settings)
        secret = _ensure_ami_secret(settings, changes)
        passwords = _ensure_sip_passwords(settings, operators, changes, load_phone_routes(settings).endpoints)
        _move_samples_aside(settings, changes)
        changed_configs = _write_configs(settings, secret, passwords, operators, changes)
        _ensure_dirs(settings, changes)
        _ensure_moh(settings, changes)
        report.prompts = render_prompts(settings)
        report.version = version(settings)
        if changed_configs and running_pids(settings):
            if changed_configs & RESTART_CONFIGS:
                _stop_locked(settings)
                _start_locked(settings, START_TIMEOUT)
                report.restarted = True
                changes.append("restarted Asterisk to apply " + ", ".join(sorted(changed_configs & RESTART_CONFIGS)))
            else:
                cli(settings, "core reload")
                report.reloaded = True
                changes.append("reloaded Asterisk's configuration (core reload)")
        return report


# --------------------------------------------------------------------------------------------
# control


def version(settings: Settings) -> str:
    """``asterisk -V`` of the install ('' if not installed)."""
    if not is_installed(settings):
        return ""
    try:
        result = run_in_root(settings, [ASTERISK_BIN, "-V"], timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def running_pids(settings: Settings) -> list[int]:
    """PIDs of this install's main Asterisk process (not remote consoles), found through /proc:
    the executable is /usr/sbin/asterisk and the process's root is our root."""
    root = asterisk_root(settings).resolve()
    # /proc/PID/root and /proc/PID/exe read as host paths (relative to our own root)
    exe_wanted = str(root.joinpath(ASTERISK_BIN.lstrip("/")))
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
            proc_root = os.readlink(entry / "root")
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc_root != str(root) or exe.removesuffix(" (deleted)") != exe_wanted:
            continue
        if any(a in (b"-r", b"-R", b"-x") or a.startswith((b"-rx", b"-Rx")) for a in argv[1:]):
            continue  # a remote console (`asterisk -rx ...`)
        pids.append(int(entry.name))
    return sorted(pids)


def is_running(settings: Settings) -> bool:
    return bool(running_pids(settings))


def cli(settings: Settings, command: str, timeout: float = 30.0) -> str:
    """Run one Asterisk CLI command (``asterisk -rx``) and return its output."""
    if not is_installed(settings):
        raise ProvisionError("Asterisk is not installed: run `callcenter asterisk install`")
    result = run_in_root(settings, [ASTERISK_BIN, "-rx", command], timeout=timeout)
    output = result.stdout
    if result.returncode != 0 or output.startswith("Unable to connect to remote asterisk"):
        raise AsteriskNotRunning(
            f"Asterisk is not running (asterisk -rx {command!r}: {(output or result.stderr).strip()[:200]})"
        )
    return output


def ami_login(host: str, port: int, username: str, secret: str, timeout: float = 2.0) -> tuple[bool, bool, str]:
    """Open an AMI connection and log in. Returns (tcp_reachable, logged_in, detail)."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return False, False, f"connect {host}:{port}: {exc.strerror or exc}"
    with sock:
        sock.settimeout(timeout)
        try:
            buf = b""
            while b"\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    return True, False, "closed before the banner"
                buf += chunk
            banner, _, buf = buf.partition(b"\r\n")
            if not banner.startswith(b"Asterisk Call Manager/"):
                return True, False, f"not AMI: {banner[:60]!r}"
            login = f"Action: Login\r\nActionID: status\r\nUsername: {username}\r\nSecret: {secret}\r\nEvents: off\r\n\r\n"
            sock.sendall(login.encode())
            while True:
                # Events: off, but a message may still precede the response; find ours
                while b"\r\n\r\n" not in buf:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return True, False, "closed during login"
                    buf += chunk
                message, _, buf = buf.partition(b"\r\n\r\n")
                text = message.decode("utf-8", "replace")
                if "ActionID: status" in text or text.startswith("Response:"):
                    break
            if "Response: Success" not in text:
                reason = re.search(r"Message: (.*)", text)
                return True, False, f"login refused: {reason.group(1) if reason else text[:80]}"
            with contextlib.suppress(OSError):
                sock.sendall(b"Action: Logoff\r\n\r\n")
            return True, True, banner.decode(errors="replace")
        except OSError as exc:
            return True, False, f"AMI: {exc}"


def _ami_check(settings: Settings, timeout: float = 2.0) -> tuple[bool, bool, str]:
    return ami_login(settings.ami_host, settings.ami_port, settings.ami_username, ami_secret(settings), timeout)


def _port_in_use_tcp(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _ports_busy(settings: Settings, wait: float) -> bool:
    """True if AMI (tcp) or SIP (udp) is still taken after waiting up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        busy = (_port_in_use_tcp(settings.ami_host, settings.ami_port)
                or _port_in_use_udp(settings.sip_host, settings.sip_port))
        if not busy or time.monotonic() >= deadline:
            return busy and _port_in_use_tcp(settings.ami_host, settings.ami_port)
        time.sleep(0.2)


def _port_in_use_udp(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _log_tail(settings: Settings, lines: int = 15) -> str:
    tails = []
    for path in (Path(settings.state_dir) / "asterisk-console.log", host_path(settings, "/var/log/asterisk/messages.log")):
        with contextlib.suppress(OSError):
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            if text:
                tails.append(f"--- {path}:\n" + "\n".join(text))
    return "\n".join(tails) or "(no log output)"


def _start_locked(settings: Settings, timeout: float) -> str:
    if not is_installed(settings):
        raise ProvisionError("Asterisk is not installed: run `callcenter asterisk install` first")
    if not ami_secret(settings):
        raise ProvisionError("no AMI secret configured: run `callcenter asterisk install` first")
    if running_pids(settings):
        _wait_for_ami(settings, timeout)
        return "already running"
    # Someone else on our ports would make Asterisk start half-deaf; say so instead. A process
    # that is still exiting (a multi-threaded Asterisk closes its sockets after its main thread
    # is gone) gets a few seconds to let go first.
    if _ports_busy(settings, wait=10.0):
        raise ProvisionError(
            f"AMI port {settings.ami_host}:{settings.ami_port} is already in use by another program "
            "(another Asterisk?): stop it or change CALLCENTER_AMI_PORT")
    if _port_in_use_udp(settings.sip_host, settings.sip_port):  # _ports_busy waited already
        raise ProvisionError(
            f"SIP port {settings.sip_host}:{settings.sip_port}/udp is already in use: stop that program "
            "or change CALLCENTER_SIP_PORT")
    uid, gid = root_ids(settings)
    _ensure_dir(host_path(settings, "/var/run/asterisk"), 0o755, uid, gid)  # host mode: /run is tmpfs
    if install_mode(settings) == "host" and _systemd_unit_exists():
        result = subprocess.run(["systemctl", "start", "asterisk.service"], capture_output=True, text=True)
        if result.returncode != 0:
            raise ProvisionError(f"systemctl start asterisk failed: {result.stderr.strip()}")
    else:
        console_log = Path(settings.state_dir) / "asterisk-console.log"
        with open(console_log, "w") as log:
            # setsid -f: Asterisk is detached from this process (and its terminal/session) at once,
            # so it outlives the CLI or the test session that started it and is never our zombie.
            argv = ["setsid", "-f", *in_root(settings, [ASTERISK_BIN, "-f", "-U", "asterisk", "-G", "asterisk"])]
            subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           env=ROOT_ENV, check=True)
    _wait_for_ami(settings, timeout)
    return "started"


def _wait_for_ami(settings: Settings, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    detail = ""
    while time.monotonic() < deadline:
        reachable, logged_in, detail = _ami_check(settings, timeout=2.0)
        if logged_in:
            return
        # While Asterisk shuts down (a restart) it refuses every login: wait, that is not a bad secret.
        if reachable and detail.startswith("login refused") and "shutting down" not in detail.lower():
            raise ProvisionError(f"Asterisk answers on AMI but refuses {settings.ami_username!r}: {detail}. "
                                 "Run `callcenter asterisk install` (it writes manager.conf) and restart.")
        if time.monotonic() - started > 2.0 and not running_pids(settings):
            raise ProvisionError(f"Asterisk exited during start-up.\n{_log_tail(settings)}")
        time.sleep(0.2)
    raise ProvisionError(
        f"Asterisk did not answer on AMI {settings.ami_host}:{settings.ami_port} within {timeout:.0f} s "
        f"({detail}).\n{_log_tail(settings)}")


def start(settings: Settings, timeout: float = START_TIMEOUT) -> str:
    """Start Asterisk (as user asterisk) unless it runs; wait until AMI accepts our login.
    Returns "started" or "already running"; raises ProvisionError with the log tail otherwise."""
    with _locked(settings):
        return _start_locked(settings, timeout)


def _stop_locked(settings: Settings, timeout: float = 15.0) -> bool:
    pids = running_pids(settings)
    if not pids:
        return False
    if install_mode(settings) == "host" and _systemd_unit_exists():
        subprocess.run(["systemctl", "stop", "asterisk.service"], capture_output=True, text=True)
    else:
        with contextlib.suppress(ProvisionError, subprocess.TimeoutExpired):
            cli(settings, "core stop now", timeout=10)
    deadline = time.monotonic() + timeout
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            for pid in pids:  # only this install's own Asterisk
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            # /proc/PID/exe is unreadable while a process exits, before it closes its sockets:
            # wait for the PIDs themselves to vanish, then for the ports to be free
            if not any(_alive(pid) for pid in pids):
                _ports_busy(settings, wait=10.0)
                return True
            time.sleep(0.1)
    raise ProvisionError(f"Asterisk (pid {pids}) did not stop")


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (its sockets are closed once it is one)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rpartition(")")[2].split()[0] != "Z"


def stop(settings: Settings, timeout: float = 15.0) -> bool:
    """Stop this install's Asterisk ('core stop now', then signals). True if it was running."""
    with _locked(settings):
        return _stop_locked(settings, timeout)


def _agi_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """A TCP connect to the FastAGI server (closed at once; our server counts it as client_vanished)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_CONTACT = re.compile(r"^\s*Contact:\s+(\S+?)/(\S+)\s+\S+\s+(\S+)", re.M)


def endpoint_contacts(settings: Settings) -> dict[str, dict[str, str]]:
    """aor -> {contact, status} from `pjsip show contacts` (Asterisk must run)."""
    found: dict[str, dict[str, str]] = {}
    for aor, uri, state in _CONTACT.findall(cli(settings, "pjsip show contacts")):
        if aor.startswith("<"):  # the header line: <Aor/ContactUri...>
            continue
        found[aor] = {"contact": uri, "status": state}
    return found


def status(settings: Settings) -> dict:
    """A snapshot: version, running, AMI reachable/login, FastAGI reachable, operator registrations."""
    installed = is_installed(settings)
    pids = running_pids(settings) if installed else []
    info: dict = {
        "installed": installed,
        "mode": install_mode(settings),
        "root": str(asterisk_root(settings)),
        "version": version(settings),
        "running": bool(pids),
        "pids": pids,
    }
    reachable, logged_in, detail = _ami_check(settings)
    info["ami"] = {"host": settings.ami_host, "port": settings.ami_port, "reachable": reachable,
                   "login": logged_in, "detail": detail}
    info["agi"] = {"host": settings.agi_host, "port": settings.agi_port,
                   "reachable": _agi_reachable(settings.agi_host, settings.agi_port)}
    info["sip"] = {"host": settings.sip_host, "port": settings.sip_port}
    contacts: dict[str, dict[str, str]] = {}
    if pids:
        with contextlib.suppress(ProvisionError, subprocess.TimeoutExpired):
            contacts = endpoint_contacts(settings)
    endpoints = {}
    try:
        operators = load_operators(settings)
    except ProvisionError:
        operators = []
    for op in operators:
        contact = contacts.get(op.endpoint)
        endpoints[op.endpoint] = {
            "operator": op.id, "name": op.name, "registered": contact is not None,
            "contact": contact["contact"] if contact else None,
            "status": contact["status"] if contact else None,
        }
    info["endpoints"] = endpoints
    return info
