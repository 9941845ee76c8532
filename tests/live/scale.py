"""Two Asterisk nodes behind the Kamailio front, each host in its own network namespace
(tests/live/netns.py), provisioned with `callcenter front ...` as an admin would (docs/scaling.md).

    front 10.77.0.10 (Kamailio)   node1 10.77.0.11, node2 10.77.0.12 (Asterisk, own root, config, spool)
    carrier 10.77.0.2 (SIPp)      phone 10.77.0.20 (baresip)   attacker 10.77.0.66 (SIPVicious)
    the app host 10.77.0.1 (this machine): one `callcenter run --node NAME` per node, as production
    runs them, on one PostgreSQL (a schema of its own); this test reads each node's AMI from here too

Each node's process serves FastAGI on a port its node does not dial, so citizens' calls go straight
to the operator queue (agi-unreachable) instead of spending 18 s in the menu: the menu over FastAGI
is the same code as on one machine, and these tests are about the front, the queue across nodes and
the call records.

Node state dirs live under ``<state_dir>/scale/`` (git-ignored var/), each with a copy of the main
install's Asterisk root (cp once, then reused) so no 5-minute build is needed.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sqlalchemy import text

from callcenter.audit_vault import CHECKPOINT_FILE, KEY_FILE
from callcenter.pbx import front, process
from callcenter.pbx.credentials import sip_passwords
from callcenter.settings import PROJECT_ROOT, Settings, get_settings
from tests.live import netns
from tests.live.helpers import AmiSession
from ticketing.store import make_engine

HOSTS = {"front": "10.77.0.10", "node1": "10.77.0.11", "node2": "10.77.0.12", "carrier": "10.77.0.2",
         "phone": "10.77.0.20", "attacker": "10.77.0.66"}
NODES = ("node1", "node2")
BAN_AFTER = 5
CALLCENTER = str(Path(sys.executable).with_name("callcenter"))
PG_BASE_URL = os.environ.get("CALLCENTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# a node silent this long is lost (production: 60 s), its heartbeat every second (production: 5 s)
NODE_LOST_AFTER_S = 3


def unavailable() -> str:
    """'' when the scale-out test can run here, else why not."""
    why = netns.available()
    if why:
        return why
    for tool, package in (("kamailio", "kamailio"), ("sipp", "sip-tester"), ("baresip", "baresip")):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is missing (apt-get install {package}; scripts/setup installs it)"
    return ""


@dataclass
class ScaleCluster:
    base: Path  # <state_dir>/scale
    config_dir: Path
    front: Settings = field(init=False)
    nodes: dict[str, Settings] = field(default_factory=dict)
    database_url: str = ""  # the nodes' processes' one store
    apps: dict[str, subprocess.Popen] = field(default_factory=dict)  # node -> its `callcenter run --node`
    api_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.front = Settings(state_dir=self.base / "front", config_dir=self.config_dir,
                              sip_host=HOSTS["front"], sip_port=5060)

    def env(self, state_dir: Path) -> dict[str, str]:
        # an explicit root: chroot mode even where the distribution has an asterisk package (nodes on
        # one machine must not share /etc/asterisk)
        return {**os.environ, "CALLCENTER_STATE_DIR": str(state_dir), "CALLCENTER_CONFIG_DIR": str(self.config_dir),
                "CALLCENTER_ASTERISK_ROOT": str(state_dir / "asterisk-root")}

    def cli(self, host: str | None, state_dir: Path, *args: str, timeout: float = 600) -> str:
        argv = [CALLCENTER, *args]
        if host is not None:
            argv = netns.exec_argv(host, argv)
        result = subprocess.run(argv, env=self.env(state_dir), check=False, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stdout[-800:]}{result.stderr[-1500:]}")
        return result.stdout

    # -- the nodes' application processes ---------------------------------------------------------
    def app_env(self, name: str, index: int) -> dict[str, str]:
        base = self.env(self.base / name)
        api = int(os.environ.get("CALLCENTER_API_PORT", "8000")) + 1 + index
        agi = int(os.environ.get("CALLCENTER_AGI_PORT", "4573")) + 1 + index  # not what the node dials
        self.api_ports[name] = api
        return {**base, "CALLCENTER_DATABASE_URL": self.database_url, "CALLCENTER_API_PORT": str(api),
                "CALLCENTER_AGI_PORT": str(agi), "CALLCENTER_NODE_HEARTBEAT_S": "1",
                "CALLCENTER_NODE_LOST_AFTER_S": str(NODE_LOST_AFTER_S), "CALLCENTER_AFTER_CALL_WORK_S": "0"}

    def start_app(self, name: str, timeout: float = 120.0) -> None:
        """`callcenter run --node NAME` on the app host, its Asterisk already running (--no-asterisk)."""
        env = self.app_env(name, NODES.index(name))
        with open(self.base / name / "app.log", "a") as logfile:
            self.apps[name] = subprocess.Popen([CALLCENTER, "run", "--node", name, "--no-asterisk"], env=env,
                                               stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.apps[name].poll() is not None:
                raise RuntimeError(f"{name}'s process ended: {self.app_log(name)[-2000:]}")
            with contextlib.suppress(OSError):
                if self.api(name, "/healthz") is not None:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}'s process did not serve within {timeout} s: {self.app_log(name)[-2000:]}")
            time.sleep(0.5)

    def stop_app(self, name: str) -> None:
        proc = self.apps.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def app_log(self, name: str) -> str:
        return (self.base / name / "app.log").read_text(encoding="utf-8", errors="replace")

    def api(self, name: str, path: str, *, token: str | None = None, body: dict | None = None):
        """JSON of the node process's API at `path` (POST when `body` is given)."""
        import json

        request = urllib.request.Request(f"http://127.0.0.1:{self.api_ports[name]}{path}",
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {token}"} if token else {})},
                                         method="GET" if body is None else "POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw = answer.read()
        return json.loads(raw) if raw and path != "/metrics" else raw.decode()

    def metric(self, name: str, metric: str) -> float:
        for line in self.api(name, "/metrics").splitlines():
            if line.startswith(metric + " ") or line.startswith(metric + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(metric)

    def engine(self):
        return make_engine(self.database_url)

    # -- the parts ------------------------------------------------------------------------------
    def start_node(self, name: str) -> None:
        self.cli(name, self.base / name, "front", "node-start", name, timeout=60)

    def kill_node(self, name: str) -> None:
        """SIGKILL, as a crashed machine: no BYE, no goodbye to the front."""
        pids = process.running_pids(self.nodes[name])
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)

    def ami(self, name: str) -> AmiSession:
        return AmiSession(self.nodes[name])

    def passwords(self) -> dict[str, str]:
        return sip_passwords(self.front)

    def dispatcher_flags(self) -> dict[str, str]:
        """node address -> dispatcher flags (AP: active, IP/TP: inactive, probing)."""
        out = front.rpc(self.front, "dispatcher.list")
        flags, uri = {}, None
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("URI:"):
                uri = line.split("sip:")[1].split(":")[0]
            elif line.startswith("FLAGS:") and uri:
                flags[uri] = line.split()[1]
        return flags

    def wait_registered(self, endpoint: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                if "Contact:" in front.rpc(self.front, "ul.lookup", "location", endpoint):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{endpoint} did not register at the front within {timeout} s")
            time.sleep(0.2)

    def trunk_channels(self, name: str) -> int:
        """Citizens' calls up on a node now."""
        out = process.cli(self.nodes[name], "core show channels concise")
        return sum(1 for line in out.splitlines() if line.startswith("PJSIP/trunk-"))

    @staticmethod
    def calls_up_until_closed(ami: AmiSession, timeout: float = 10.0) -> dict[str, str]:
        """Citizens' calls a node had up when its AMI connection closed (it died), channel -> uniqueid:
        every event it sent until then is read, trunk channels created minus those hung up."""
        up: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        messages = list(ami.pending)
        ami.pending.clear()
        while True:
            for msg in messages:
                channel = msg.get("Channel", "")
                if channel.startswith("PJSIP/trunk-"):
                    if msg.get("Event") == "Newchannel":
                        up[channel] = msg.get("Uniqueid", "")
                    elif msg.get("Event") == "Hangup":
                        up.pop(channel, None)
            try:
                msg = ami._read_message(deadline)
            except (ConnectionError, OSError):
                return up
            if msg is None:
                raise TimeoutError("the node's AMI connection did not close")
            messages = [msg]

    def calls_processed(self, name: str) -> int:
        out = process.cli(self.nodes[name], "core show calls")
        return int(out.split("calls processed")[0].split()[-1]) if "calls processed" in out else 0


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _node_root(source: Path, node_dir: Path) -> None:
    """A copy of the main install's Asterisk root (the node's /etc/asterisk is then its own)."""
    target = node_dir / "asterisk-root"
    if (target / "usr/sbin/asterisk").exists() or not (source / "usr/sbin/asterisk").exists():
        return  # reused, or none to copy: node-install builds one
    node_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(source), str(target) + ".partial"], check=True)
    os.replace(str(target) + ".partial", target)


@contextlib.contextmanager
def scale_cluster(tmp: Path):
    """Namespaces, the front and two nodes up; everything stopped and removed afterwards."""
    main = get_settings()
    base = Path(main.state_dir) / "scale"
    config_dir = tmp / "config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    (config_dir / "cluster.yaml").write_text(yaml.safe_dump({
        "front": {"address": HOSTS["front"], "sip_port": 5060},
        "carriers": [HOSTS["carrier"]],
        "app": netns.HOST_ADDRESS,
        "nodes": [{"name": n, "address": HOSTS[n]} for n in NODES],
        "security": {"ban_after_failures": BAN_AFTER, "ban_seconds": 600, "failure_window_s": 600,
                     "flood_requests_per_2s": 60},
    }))
    cluster = ScaleCluster(base, config_dir)
    source = Path(main.effective_asterisk_root)
    schema = f"scale_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    cluster.database_url = f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    netns.setup(HOSTS)
    try:
        front.stop_front(cluster.front)  # one a killed earlier run left in its (now deleted) namespace
        cluster.cli(None, base / "front", "front", "install")
        cluster.cli("front", base / "front", "front", "start", timeout=30)
        spec = front.load_cluster(config_dir / "cluster.yaml")
        for name in NODES:
            _node_root(source, base / name)
            cluster.cli(None, base / name, "front", "node-install", name)
            source = base / NODES[0] / "asterisk-root"  # built by the first node if there was none
            cluster.nodes[name] = front.node_settings(
                Settings(state_dir=base / name, config_dir=config_dir, asterisk_root=base / name / "asterisk-root"),
                spec, name)
        for name in NODES:
            cluster.kill_node(name)  # likewise
            cluster.start_node(name)
        deadline = time.monotonic() + 15
        while set(cluster.dispatcher_flags().values()) != {"AP"} or len(cluster.dispatcher_flags()) != 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes not up at the front: {cluster.dispatcher_flags()}")
            time.sleep(0.2)
        # one audit key for every process writing the one store (A1: the chain is verified with it):
        # the first process makes it for this store, the others get a copy before they start
        for name in NODES:
            for old in (KEY_FILE, CHECKPOINT_FILE):
                (base / name / old).unlink(missing_ok=True)
        for name in NODES:
            if name != NODES[0]:
                shutil.copy2(base / NODES[0] / KEY_FILE, base / name / KEY_FILE)
            cluster.start_app(name)
        yield cluster
    finally:
        for name in list(cluster.apps):
            with contextlib.suppress(Exception):
                cluster.stop_app(name)
        for name in cluster.nodes:  # stopped from inside: its ports are checked where they are bound
            with contextlib.suppress(Exception):
                cluster.cli(name, base / name, "front", "node-stop", name, timeout=60)
        with contextlib.suppress(Exception):
            front.stop_front(cluster.front)
        netns.teardown(HOSTS)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
