"""The SIP front for more than one Asterisk node (docs/scaling.md): Kamailio with its dispatcher over
the nodes, the operators' registrar, and the ban of password guessers, configured from
``config/cluster.yaml`` and the template ``asterisk/kamailio/kamailio.cfg.in``.

Its files live in ``<state_dir>/kamailio/``: the rendered configuration (0640 root:kamailio, it holds
the operators' SIP passwords), the dispatcher list, the control socket, the pid file and the log.
Kamailio runs as the user ``kamailio`` of its Debian package, for the same reason Asterisk does not
run as root (docs/asterisk.md).
"""
from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import pwd
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from callcenter.pbx.credentials import ensure_sip_passwords, write_private
from callcenter.pbx.render import TEMPLATE_DIR, load_operators, render_template
from callcenter.pbx.root import ProvisionError, ensure_tools
from callcenter.settings import Settings

KAMAILIO_BIN = "/usr/sbin/kamailio"
MODULE_DIR = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
TEMPLATE = TEMPLATE_DIR / "kamailio" / "kamailio.cfg.in"
DISPATCH_SET = 1


@dataclass(frozen=True)
class Node:
    name: str
    address: str  # the node's SIP (and AMI) address
    sip_port: int = 5060

    @property
    def uri(self) -> str:
        return f"sip:{self.address}:{self.sip_port}"


@dataclass(frozen=True)
class Cluster:
    """config/cluster.yaml: the front's address, the carrier's SBC addresses, the nodes, the ban policy."""

    front: str
    front_port: int
    carriers: tuple[str, ...]
    nodes: tuple[Node, ...]
    app: str = "127.0.0.1"  # where the nodes reach the application's FastAGI server
    ban_after_failures: int = 5
    ban_seconds: int = 600
    failure_window_s: int = 600
    flood_requests_per_2s: int = 60

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ProvisionError(f"no node {name!r} in the cluster configuration ({', '.join(n.name for n in self.nodes)})")


def _address(value: object, what: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ProvisionError(f"cluster configuration: {what} {value!r} is not an IP address") from None


def load_cluster(path: Path) -> Cluster:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ProvisionError(f"{path} is missing: see docs/scaling.md for its format") from None
    front = data.get("front") or {}
    security = data.get("security") or {}
    nodes = []
    for entry in data.get("nodes") or ():
        if not isinstance(entry, dict) or not str(entry.get("name", "")).isidentifier():
            raise ProvisionError(f"{path}: each node needs a name (letters, digits, _) and an address: {entry!r}")
        nodes.append(Node(str(entry["name"]), _address(entry.get("address"), "node address"),
                          int(entry.get("sip_port", 5060))))
    if not nodes:
        raise ProvisionError(f"{path}: no nodes")
    carriers = tuple(str(ipaddress.ip_network(str(c), strict=False)) for c in data.get("carriers") or ())
    if not carriers:
        raise ProvisionError(f"{path}: carriers (the SBC addresses whose calls are taken) is empty")
    numbers = {key: int(security.get(key, default)) for key, default in (
        ("ban_after_failures", 5), ("ban_seconds", 600), ("failure_window_s", 600), ("flood_requests_per_2s", 60))}
    if min(numbers.values()) < 1:
        raise ProvisionError(f"{path}: security settings must be positive: {numbers}")
    return Cluster(front=_address(front.get("address"), "front address"), front_port=int(front.get("sip_port", 5060)),
                   carriers=carriers, nodes=tuple(nodes), app=_address(data.get("app", "127.0.0.1"), "app address"),
                   **numbers)


def cluster_path(settings: Settings) -> Path:
    return Path(settings.config_dir) / "cluster.yaml"


def node_settings(settings: Settings, cluster: Cluster, name: str) -> Settings:
    """The settings of node `name`, for its Asterisk (`node-install`) and its application process
    (`callcenter run --node`): SIP and AMI on its own address, citizens' calls taken from the front
    only, operators reached through the front, FastAGI at the application's address, its calls named
    by the node (systemname), the queue's members shared with the other nodes' processes."""
    node = cluster.node(name)
    return settings.model_copy(update={
        "sip_host": node.address, "sip_port": node.sip_port, "ami_host": node.address,
        "ami_permit": f"{cluster.app},{node.address}",
        "sip_front": f"{cluster.front}:{cluster.front_port}", "sip_trunk_match": cluster.front,
        "agi_host": cluster.app, "system_name": name, "queue_shared": True,
    })


# --------------------------------------------------------------------------------------------
# rendering and files


def front_dir(settings: Settings) -> Path:
    return Path(settings.state_dir) / "kamailio"


def ctl_socket(settings: Settings) -> Path:
    return front_dir(settings) / "run" / "kamailio_ctl"


def render_front(settings: Settings, cluster: Cluster, passwords: dict[str, str]) -> dict[str, str]:
    """File name -> content: kamailio.cfg and dispatcher.list."""
    pw_lines = []
    for op in load_operators(settings):
        if op.phone != "softphone":
            continue  # browser phones register on a node's wss listener (docs/scaling.md)
        if op.endpoint not in passwords:
            raise ProvisionError(f"no SIP password for {op.endpoint}")
        pw_lines.append(f'\t$sht(pw=>{op.endpoint}) = "{passwords[op.endpoint]}";')
    carrier_test = " || ".join(f'is_in_subnet("$si", "{net}")' for net in cluster.carriers)
    cfg = render_template(TEMPLATE.read_text(encoding="utf-8"), {
        "LOG_LEVEL": "1",
        "LISTEN_ADDR": cluster.front, "LISTEN_PORT": str(cluster.front_port),
        "MODULE_DIR": MODULE_DIR, "CTL_SOCKET": str(ctl_socket(settings)),
        "DISPATCHER_LIST": str(front_dir(settings) / "dispatcher.list"),
        "OPERATOR_PASSWORDS": "\n".join(pw_lines) or "\t# no softphone operators",
        # an unknown user is checked against a password nobody has, so it costs and answers the same
        "DUMMY_PASSWORD": secrets.token_urlsafe(24),
        "CARRIER_TEST": carrier_test,
        "BAN_AFTER": str(cluster.ban_after_failures), "BAN_SECONDS": str(cluster.ban_seconds),
        "FAIL_WINDOW": str(cluster.failure_window_s), "PIKE_DENSITY": str(cluster.flood_requests_per_2s),
    })
    ds = "".join(f"{DISPATCH_SET} {node.uri} 0 0 name={node.name}\n" for node in cluster.nodes)
    return {"kamailio.cfg": cfg, "dispatcher.list": ds}


def _kamailio_ids() -> tuple[int, int]:
    try:
        return pwd.getpwnam("kamailio").pw_uid, grp.getgrnam("kamailio").gr_gid
    except KeyError:
        raise ProvisionError("user kamailio is missing: apt-get install kamailio") from None


def install_front(settings: Settings, cluster: Cluster) -> list[str]:
    """Install Kamailio if missing, render the front's files, check the configuration. Returns what changed."""
    changes = [f"installed {p}" for p in ensure_tools({"kamailio": "kamailio"})]
    if changes and Path("/run/systemd/system").exists():
        # the package's service would take 0.0.0.0:5060 with Debian's sample configuration
        subprocess.run(["systemctl", "disable", "--now", "kamailio.service"], check=False, capture_output=True)
    uid, gid = _kamailio_ids()
    # the front owns the operators' passwords: nodes behind it do not authenticate phones
    passwords = ensure_sip_passwords(settings, load_operators(settings), changes)
    files = render_front(settings, cluster, passwords)
    base = front_dir(settings)
    (base / "run").mkdir(parents=True, exist_ok=True)
    os.chown(base / "run", uid, gid)
    os.chmod(base, 0o750)
    os.chown(base, 0, gid)
    cfg_path = base / "kamailio.cfg"
    # the dummy password changes on every render: compare without it
    old = cfg_path.read_text(encoding="utf-8") if cfg_path.exists() else ""
    if _without_dummy(old) != _without_dummy(files["kamailio.cfg"]):
        write_private(cfg_path, files["kamailio.cfg"])
        changes.append(f"wrote {cfg_path}")
    os.chown(cfg_path, 0, gid)
    os.chmod(cfg_path, 0o640)
    ds_path = base / "dispatcher.list"
    if not ds_path.exists() or ds_path.read_text(encoding="utf-8") != files["dispatcher.list"]:
        ds_path.write_text(files["dispatcher.list"], encoding="utf-8")
        changes.append(f"wrote {ds_path}")
    check = subprocess.run([KAMAILIO_BIN, "-c", "-f", str(cfg_path)], check=False, capture_output=True, text=True)
    if check.returncode != 0:
        raise ProvisionError(f"kamailio refuses {cfg_path}:\n{check.stderr.strip()[-1500:]}")
    return changes


def _without_dummy(cfg: str) -> str:
    return "\n".join(line for line in cfg.splitlines() if "no-such-account" not in line)


# --------------------------------------------------------------------------------------------
# process


def front_pid(settings: Settings) -> int | None:
    try:
        pid = int((front_dir(settings) / "run" / "kamailio.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    return pid if exe.removesuffix(" (deleted)") == KAMAILIO_BIN else None


def start_front(settings: Settings, timeout: float = 10.0) -> str:
    """Start Kamailio in this network namespace (run the command under `ip netns exec` for another)."""
    if front_pid(settings):
        return "already running"
    base = front_dir(settings)
    cfg = base / "kamailio.cfg"
    if not cfg.exists():
        raise ProvisionError("the front is not installed: run `callcenter front install` first")
    with contextlib.suppress(FileNotFoundError):
        ctl_socket(settings).unlink()
    with open(base / "kamailio.log", "a") as log:
        subprocess.run(["setsid", "-f", KAMAILIO_BIN, "-DD", "-E", "-f", str(cfg), "-P", str(base / "run" / "kamailio.pid"),
                        "-Y", str(base / "run"), "-u", "kamailio", "-g", "kamailio", "-m", "64", "-M", "8"],
                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if front_pid(settings) and ctl_socket(settings).exists():
            return "started"
        time.sleep(0.1)
    tail = (base / "kamailio.log").read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
    raise ProvisionError("Kamailio did not start:\n" + "\n".join(tail))


def stop_front(settings: Settings, timeout: float = 10.0) -> bool:
    pid = front_pid(settings)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def rpc(settings: Settings, *command: str) -> str:
    """One Kamailio RPC command over its control socket (kamcmd), e.g. ``rpc(s, "dispatcher.list")``."""
    result = subprocess.run(["kamcmd", "-s", f"unix:{ctl_socket(settings)}", *command],
                            check=False, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise ProvisionError(f"kamcmd {' '.join(command)}: {(result.stderr or result.stdout).strip()[:300]}")
    return result.stdout


__all__ = ["Cluster", "Node", "cluster_path", "ctl_socket", "front_pid", "install_front", "load_cluster",
           "node_settings", "render_front", "rpc", "start_front", "stop_front"]
