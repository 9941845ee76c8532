"""Install-wide settings, from the environment (prefix CALLCENTER_) or `var/secrets.env`.

Secrets (AMI password, SIP passwords) are generated per install into the state directory,
which git ignores; nothing secret has a default here.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CALLCENTER_",
        env_file=(str(PROJECT_ROOT / "var" / "secrets.env"),),
        extra="ignore",
    )

    state_dir: Path = PROJECT_ROOT / "var"
    config_dir: Path = PROJECT_ROOT / "config"
    database_url: str = ""  # empty: SQLite file in state_dir
    # A PostgreSQL that stops answering without refusing (packets dropped, a partition) must cost a
    # caller in the menu at most store_deadline_s before the operator queue, not TCP's minutes
    # (ticketing/store.py StoreDeadlines, docs/failure-drills.md): connecting, one menu transaction,
    # and how long unacknowledged data or keepalive probes (after store_keepalive_idle_s idle) mean
    # the connection is dead, on both ends. Every engine of the install is made with them (store_engine).
    store_connect_timeout_s: int = 2
    store_deadline_s: float = 1.5
    store_dead_after_s: float = 2.0
    store_keepalive_idle_s: int = 5
    timezone: str = "Asia/Shanghai"

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    token_ttl_hours: int = 12

    # Asterisk, provisioned by `callcenter asterisk install`
    asterisk_root: Path | None = None  # empty: state_dir/asterisk-root (Debian sid chroot)
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    ami_username: str = "callcenter"
    ami_secret: str = Field(default="", repr=False)
    ami_permit: str = "127.0.0.1"  # addresses AMI logins are taken from (comma-separated)
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    # Asterisk's systemname: the prefix of every uniqueid ("node1-1772430000.7"); each node of a
    # cluster has its own, so two nodes' calls never share a uniqueid in the one store (empty: none)
    system_name: str = ""
    # SIP over TLS for operators' secure phones (phone: secure in config/operators.yaml)
    sip_tls_port: int = 5061
    # The carrier's trunk (asterisk/pjsip.conf [trunk]): calls from these addresses (comma-separated IPs
    # or CIDRs of the carrier's SBC) are taken without authentication into [citizen-in]. The default is a
    # loopback alias nothing else uses: SIPp as the test carrier (benchmarks/sip_load.py, live tests).
    sip_trunk_match: str = "127.0.0.2"
    # set on a node behind the SIP front (docs/scaling.md, `callcenter front`): host:port of the front,
    # through which this node reaches the operators' phones (they register there, not here)
    sip_front: str = ""
    # one application process per Asterisk node (docs/scaling.md): the queue's members are kept in the
    # shared database and every node's queue follows them (callcenter/callcontrol/membership.py)
    queue_shared: bool = False
    # a cluster node's process heartbeats its node (system_name) every node_heartbeat_s while linked to
    # its Asterisk; a node silent for node_lost_after_s is lost: its open call records are closed as
    # node_lost (ticketing/nodes.py, callcenter/liveness.py)
    node_heartbeat_s: float = 5.0
    node_lost_after_s: float = 60.0
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    # after-call work (callcenter/callcontrol/wrapup.py): seconds an operator is held out of the queue
    # after each queue call to complete the case; 0 = none
    after_call_work_s: float = 15.0
    # the operators' browser phone (WebRTC, README "The phone in the console"): Asterisk's HTTPS
    # server carries the SIP WebSocket at wss://<wss_host>:<wss_port>/ws with a certificate generated
    # per install (<state_dir>/tls/); wss_url overrides what the page connects to (a proxy in front)
    wss_host: str = "127.0.0.1"
    wss_port: int = 8089
    wss_url: str = ""  # empty: wss://<the console page's host>:<wss_port>/ws
    # the event loop of `callcenter run` and `callcenter agi serve` (callcenter/eventloop.py)
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # logging (callcenter/logs.py): quiet INFO by default, JSON lines for a log collector; no file:
    # stderr (systemd's journal); a relative file name is under state_dir (`callcenter logs logrotate`)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_file: Path | None = None
    # /readyz (callcenter/ops/health.py): unready below this much free space where recordings go
    recordings_min_free_mb: int = 2048
    recordings_check_s: float = 30.0  # how often the running hotline checks it (and logs an alarm)
    # Twilio (callcenter/twilio/, README "Running on Twilio"): the auth token signs every webhook;
    # twilio_public_url is the install's address as Twilio calls it (what the signature covers).
    twilio_account_sid: str = ""
    twilio_auth_token: str = Field(default="", repr=False)
    twilio_public_url: str = ""  # e.g. https://hotline.example.gov.cn (no trailing slash)
    twilio_from_number: str = ""  # the Twilio number SMS and callback calls come from
    twilio_queue: str = "hotline"  # <Enqueue> name the operators' client answers from
    # operators answering the queue on Twilio (agents.py): extension -> where to ring them (client:op8001
    # by default, from the profile's extension; a phone number here), e.g. '{"8001": "+8613900000000"}'
    twilio_operators: dict[str, str] = {}
    twilio_operator_number: str = ""  # set: <Dial> this number instead of <Enqueue> (e.g. the PBX's trunk)
    twilio_prompt_url: str = ""  # set: <Play> {url}/{prompt}.wav rendered prompts; empty: <Say language=zh-CN>
    twilio_replay_window_s: int = 86400  # how long an answered webhook request is remembered as seen
    # which driver answers each number reaching Twilio: twilio | asterisk | overflow (callcenter/twilio/routing.py),
    # e.g. CALLCENTER_TWILIO_NUMBERS='{"+862112345": "overflow"}'; the PBX is reached at twilio_pbx_sip_uri
    twilio_numbers: dict[str, str] = {}
    twilio_pbx_sip_uri: str = ""  # e.g. sip:12345@pbx.example.gov.cn;transport=tls
    # which driver places 回访 callback survey calls: asterisk (AMI Originate) | twilio (REST API)
    callback_driver: Literal["asterisk", "twilio"] = "asterisk"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state_dir / 'callcenter.db'}"

    @property
    def effective_asterisk_root(self) -> Path:
        return self.asterisk_root or (self.state_dir / "asterisk-root")

    def store_engine(self, **kwargs):
        """The engine on this install's store, with the store's deadlines (PostgreSQL)."""
        from ticketing.store import StoreDeadlines, make_engine

        deadlines = StoreDeadlines(connect_s=self.store_connect_timeout_s, transaction_s=self.store_deadline_s,
                                   dead_after_s=self.store_dead_after_s, keepalive_idle_s=self.store_keepalive_idle_s)
        return make_engine(self.effective_database_url, deadlines, **kwargs)


@lru_cache
def get_settings() -> Settings:
    return Settings()
