"""Where Asterisk lives, the paths inside it we use, and how to run things there.

Two layouts (chosen once by `install`, recorded in ``<state_dir>/asterisk-install.json``):

- ``chroot``: a Debian sid root built with mmdebstrap at ``settings.effective_asterisk_root``
  (Debian 12 ships no Asterisk). Paths inside it are mapped to the host by `host_path`, which follows
  the root's symlinks *inside* the root: ``/var/run`` there is an absolute link to ``/run`` and must not
  land in the host's ``/run``.
- ``host``: the distribution's own ``asterisk`` package (Ubuntu); the root is ``/``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path, PurePosixPath

from callcenter.settings import Settings

ASTERISK_BIN = "/usr/sbin/asterisk"
STATE_FILE = "asterisk-install.json"
# Where call recordings go, as Asterisk sees it: the dialplan's MONITOR_FILENAME, the IVR's
# messages and the API's downloads all name files in it.
RECORDINGS_DIR = "/var/spool/asterisk/monitor/callcenter"
# Where received faxes land (the dialplan's [fax-in], read by the fax/received AGI handler).
FAX_DIR = "/var/spool/asterisk/fax/callcenter"
MOH_DIR = "/usr/share/asterisk/moh"


class ProvisionError(RuntimeError):
    """Provisioning or control of Asterisk failed; the message says what to do."""


class AsteriskNotRunning(ProvisionError):
    """The Asterisk of this install is not running (no control socket answers)."""


def install_state(settings: Settings) -> dict:
    path = Path(settings.state_dir) / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def install_mode(settings: Settings) -> str:
    """``"host"`` if the distribution's package is used, else ``"chroot"``."""
    return "host" if install_state(settings).get("mode") == "host" else "chroot"


def asterisk_root(settings: Settings) -> Path:
    """The directory that is ``/`` for Asterisk (``/`` itself in host mode)."""
    if install_mode(settings) == "host":
        return Path("/")
    return Path(settings.effective_asterisk_root).absolute()


def asterisk_file(settings: Settings, path_inside_root: str) -> bytes | None:
    """The bytes of a file Asterisk wrote (a received fax), or None if there is none."""
    try:
        return host_path(settings, path_inside_root).read_bytes()
    except (FileNotFoundError, IsADirectoryError, ValueError):
        return None


def host_path(settings: Settings, path_inside_root: str | PurePosixPath) -> Path:
    """Map an absolute path as Asterisk sees it to the path on this host.

    Symlinks met on the way are resolved relative to the root (as the kernel does under chroot),
    so ``host_path(s, "/var/run/asterisk")`` is ``<root>/run/asterisk``, never the host's ``/run``.
    Components that do not exist yet are kept as they are.
    """
    inside = PurePosixPath(path_inside_root)
    if not inside.is_absolute():
        raise ValueError(f"path inside the Asterisk root must be absolute: {path_inside_root!r}")
    root = asterisk_root(settings)
    if root == Path("/"):
        return Path(inside)
    return root.joinpath(*_resolve_inside(root, inside).parts[1:])


def recordings_dir(settings: Settings) -> Path:
    """The recordings directory on this host."""
    return host_path(settings, RECORDINGS_DIR)


def _resolve_inside(root: Path, inside: PurePosixPath) -> PurePosixPath:
    pending = list(inside.parts[1:])
    current = PurePosixPath("/")
    hops = 0
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = current.parent
            continue
        candidate = current / name
        on_host = root.joinpath(*candidate.parts[1:])
        if on_host.is_symlink():
            hops += 1
            if hops > 40:
                raise ProvisionError(f"too many symlinks resolving {inside} inside {root}")
            target = PurePosixPath(os.readlink(on_host))
            base = target if target.is_absolute() else current / target
            pending = list(base.parts[1:]) + pending
            current = PurePosixPath("/")
            continue
        current = candidate
    return current


def root_ids(settings: Settings, user: str = "asterisk") -> tuple[int, int]:
    """uid and gid of `user` as the root's own /etc/passwd defines them (host names may differ)."""
    passwd = host_path(settings, "/etc/passwd")
    try:
        for line in passwd.read_text(encoding="utf-8").splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and fields[0] == user:
                return int(fields[2]), int(fields[3])
    except FileNotFoundError:
        pass
    raise ProvisionError(f"user {user!r} not found in {passwd}; is Asterisk installed there?")


def ensure_dir(path: Path, mode: int, uid: int, gid: int, enforce_mode: bool = True) -> bool:
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


def is_installed(settings: Settings) -> bool:
    return host_path(settings, ASTERISK_BIN).exists()


def in_root(settings: Settings, argv: list[str]) -> list[str]:
    """argv to run a program of the Asterisk install (under chroot in chroot mode)."""
    root = asterisk_root(settings)
    if root == Path("/"):
        return list(argv)
    return ["chroot", str(root), *argv]


# A clean environment for programs inside the root: the host's PATH/venv make no sense there.
ROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/var/lib/asterisk"}


def run_in_root(settings: Settings, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        in_root(settings, argv), capture_output=True, text=True, timeout=timeout, env=ROOT_ENV,
        stdin=subprocess.DEVNULL,
    )


def ensure_tools(tools: dict[str, str]) -> list[str]:
    """Make sure each command (key) exists, installing its Debian package (value) when missing.

    Installs only when running as root on a system with apt-get; otherwise fails with the command
    to run. Returns the packages installed (empty when nothing was missing).
    """
    missing = {cmd: pkg for cmd, pkg in tools.items() if shutil.which(cmd) is None}
    if not missing:
        return []
    packages = sorted(set(missing.values()))
    hint = f"install them first: apt-get install {' '.join(packages)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ProvisionError(f"missing program(s) {', '.join(sorted(missing))}; {hint}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    logging.getLogger("callcenter.pbx.install").info("installing %s (apt-get)…", " ".join(packages))
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        # a fresh machine may never have fetched package lists
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env)
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    still = [cmd_ for cmd_ in missing if shutil.which(cmd_) is None]
    if result.returncode != 0 or still:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ProvisionError(f"could not install {', '.join(packages)} ({'; '.join(tail)}); {hint}")
    return packages
