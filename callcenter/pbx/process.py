"""Process control of the install's Asterisk: find it (through /proc), start it, stop it, run
CLI commands in it, and report its status (AMI login, FastAGI, operator registrations).

Asterisk never runs as root: it parses network input (SIP, RTP, AMI) and runs dialplan that other
parts of the project write, so it is started with ``-U asterisk -G asterisk`` (and the same in
asterisk.conf) and owns only its own state, log, spool and run directories.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from callcenter.pbx.credentials import ami_secret
from callcenter.pbx.render import load_operators
from callcenter.pbx.root import (
    ASTERISK_BIN,
    ROOT_ENV,
    AsteriskNotRunning,
    ProvisionError,
    asterisk_root,
    ensure_dir,
    host_path,
    in_root,
    install_mode,
    is_installed,
    root_ids,
    run_in_root,
)
from callcenter.settings import Settings

START_TIMEOUT = 20.0


@contextlib.contextmanager
def locked(settings: Settings) -> Iterator[None]:
    """One provisioning/control operation at a time across processes (parallel test sessions)."""
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "asterisk.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
            buf = _recv_until(sock, b"", b"\r\n")
            if buf is None:
                return True, False, "closed before the banner"
            banner, _, buf = buf.partition(b"\r\n")
            if not banner.startswith(b"Asterisk Call Manager/"):
                return True, False, f"not AMI: {banner[:60]!r}"
            login = f"Action: Login\r\nActionID: status\r\nUsername: {username}\r\nSecret: {secret}\r\nEvents: off\r\n\r\n"
            sock.sendall(login.encode())
            while True:
                # Events: off, but a message may still precede the response; find ours
                buf = _recv_until(sock, buf, b"\r\n\r\n")
                if buf is None:
                    return True, False, "closed during login"
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


def _recv_until(sock: socket.socket, buf: bytes, sep: bytes) -> bytes | None:
    """``buf`` and what the socket sends next, until it holds ``sep``; None if the peer closed first."""
    while sep not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buf += chunk
    return buf


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


# The systemd unit that runs Asterisk, by install mode: the package's own, or the one
# `callcenter service install` writes for the chroot.
SYSTEMD_UNITS = {"host": "asterisk.service", "chroot": "callcenter-asterisk.service"}


def systemd_unit_exists(unit: str = SYSTEMD_UNITS["host"]) -> bool:
    if shutil.which("systemctl") is None or not Path("/run/systemd/system").exists():
        return False
    result = subprocess.run(["systemctl", "cat", unit], capture_output=True, text=True)
    return result.returncode == 0


def managing_unit(settings: Settings) -> str | None:
    """The systemd unit that runs this install's Asterisk, if there is one: start and stop go
    through it then, so systemd keeps tracking (and restarting) the process."""
    unit = SYSTEMD_UNITS[install_mode(settings)]
    return unit if systemd_unit_exists(unit) else None


def start_locked(settings: Settings, timeout: float) -> str:
    """`start` for a caller that holds `locked` already (install restarting Asterisk)."""
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
    ensure_dir(host_path(settings, "/var/run/asterisk"), 0o755, uid, gid)  # host mode: /run is tmpfs
    unit = managing_unit(settings)
    if unit is not None:
        result = subprocess.run(["systemctl", "start", unit], capture_output=True, text=True)
        if result.returncode != 0:
            raise ProvisionError(f"systemctl start {unit} failed: {result.stderr.strip()}")
    else:
        console_log = Path(settings.state_dir) / "asterisk-console.log"
        # append: logrotate's copytruncate empties it in place, and "w" would leave a sparse file
        with open(console_log, "a") as log:
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
    with locked(settings):
        return start_locked(settings, timeout)


def stop_locked(settings: Settings, timeout: float = 15.0) -> bool:
    """`stop` for a caller that holds `locked` already."""
    pids = running_pids(settings)
    if not pids:
        return False
    unit = managing_unit(settings)
    if unit is not None:
        subprocess.run(["systemctl", "stop", unit], capture_output=True, text=True)
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
    with locked(settings):
        return stop_locked(settings, timeout)


# --------------------------------------------------------------------------------------------
# status


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


__all__ = ["START_TIMEOUT", "ami_login", "cli", "endpoint_contacts", "is_running", "locked", "running_pids", "start",
           "status", "stop", "version"]
