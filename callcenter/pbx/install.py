"""Installation of the hotline's Asterisk, idempotent: gets Asterisk (the distribution's package if
apt offers one, else a Debian sid root built with mmdebstrap), writes the rendered configuration,
generates secrets once into the state directory, renders the Mandarin prompts and fixes ownership.
A second run changes nothing and says so. A running Asterisk is reloaded (or restarted) to apply
changed configuration.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from callcenter.pbx.credentials import ensure_ami_secret, ensure_sip_passwords
from callcenter.pbx.process import (
    START_TIMEOUT,
    cli,
    locked,
    running_pids,
    start_locked,
    stop_locked,
    systemd_unit_exists,
    version,
)
from callcenter.pbx.prompts import PromptReport, render_prompts
from callcenter.pbx.render import Operator, load_operators, load_phone_routes, render_configs
from callcenter.pbx.root import (
    ASTERISK_BIN,
    FAX_DIR,
    MOH_DIR,
    RECORDINGS_DIR,
    STATE_FILE,
    ProvisionError,
    ensure_dir,
    ensure_tools,
    host_path,
    install_mode,
    install_state,
    root_ids,
)
from callcenter.pbx.tls import CERT_FILE, KEY_FILE, KEYS_DIR, ensure_certificate
from callcenter.settings import Settings

# What a long step is doing, at INFO on stderr (callcenter/logs.py): a root build takes minutes.
progress = logging.getLogger("callcenter.pbx.install")

ETC = "/etc/asterisk"
MOH_TONE = "callcenter-hold-tone.wav"
SID_MIRROR = "http://deb.debian.org/debian"
SID_PACKAGES = "asterisk,asterisk-modules,asterisk-config"
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
    "/var/run/asterisk", RECORDINGS_DIR, FAX_DIR,
)


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
    progress.info("building the Asterisk root with mmdebstrap at %s (several minutes; log %s)…", root, log)
    began = time.monotonic()
    with open(log, "w") as fh:
        result = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if result.returncode != 0 or not (partial / ASTERISK_BIN.lstrip("/")).exists():
        raise ProvisionError(f"mmdebstrap failed (rc={result.returncode}); see {log}")
    if root.exists():
        root.rmdir()  # empty (checked above)
    os.replace(partial, root)  # a root either is complete or does not exist
    progress.info("Asterisk root built in %.0f s", time.monotonic() - began)
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
        progress.info("installing the distribution's asterisk package (apt-get)…")
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


def _disable_host_service(changes: list[str]) -> None:
    """The package starts Asterisk at once, with its sample configuration: stop it until ours is in
    place (`start` starts it again through systemd; the unit stays enabled for boot)."""
    if systemd_unit_exists():
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


def _write_certificate(settings: Settings, changes: list[str]) -> set[str]:
    """The install's certificate (callcenter/pbx/tls.py) where http.conf and the WebRTC endpoints read it."""
    uid, gid = root_ids(settings)
    cert, key = ensure_certificate(settings, changes)
    keys = host_path(settings, KEYS_DIR)
    changed = {name for name, content in ((CERT_FILE, cert), (KEY_FILE, key))
               if _apply_file(keys / name, content, 0o640, uid, gid)}
    if changed:
        changes.append(f"wrote {KEYS_DIR}/: {', '.join(sorted(changed))}")
    return changed


def _ensure_dirs(settings: Settings, changes: list[str]) -> None:
    uid, gid = root_ids(settings)
    fixed = []
    for inside in ASTERISK_DIRS:
        # recordings are personal data: not readable by other users of the machine; the package's
        # own directories keep the modes it gave them
        recordings = inside == RECORDINGS_DIR
        if ensure_dir(host_path(settings, inside), 0o750 if recordings else 0o755, uid, gid, enforce_mode=recordings):
            fixed.append(inside)
    if fixed:
        changes.append(f"created/owned by asterisk: {', '.join(fixed)}")


def install(settings: Settings) -> InstallReport:
    """Install and configure Asterisk (idempotent). Reloads a running Asterisk whose configuration
    changed (restarts it when asterisk.conf/modules.conf/logger.conf changed)."""
    with locked(settings):
        began = time.monotonic()
        progress.info("provisioning Asterisk: package or root, configuration, prompts…")
        changes: list[str] = []
        mode, root = _ensure_asterisk(settings, changes)
        report = InstallReport(mode=mode, root=root, changes=changes)
        operators = load_operators(settings)
        secret = ensure_ami_secret(settings, changes)
        passwords = ensure_sip_passwords(settings, operators, changes, load_phone_routes(settings).endpoints)
        _move_samples_aside(settings, changes)
        changed_configs = _write_configs(settings, secret, passwords, operators, changes)
        changed_configs |= _write_certificate(settings, changes)
        _ensure_dirs(settings, changes)
        _ensure_moh(settings, changes)
        report.prompts = render_prompts(settings)
        report.version = version(settings)
        if changed_configs and running_pids(settings):
            if changed_configs & RESTART_CONFIGS:
                progress.info("restarting Asterisk to apply %s…", ", ".join(sorted(changed_configs & RESTART_CONFIGS)))
                stop_locked(settings)
                start_locked(settings, START_TIMEOUT)
                report.restarted = True
                changes.append("restarted Asterisk to apply " + ", ".join(sorted(changed_configs & RESTART_CONFIGS)))
            else:
                cli(settings, "core reload")
                report.reloaded = True
                changes.append("reloaded Asterisk's configuration (core reload)")
        progress.info("Asterisk install done in %.0f s", time.monotonic() - began)
        return report


__all__ = ["InstallReport", "install"]
