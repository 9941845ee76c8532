"""Helpers for live tests against the project's real Asterisk (started by the `asterisk` fixture).

`AmiSession` is a deliberately small synchronous AMI client (raw socket) so live tests do not depend
on the application's own AMI client, which they may be testing.
"""
from __future__ import annotations

import contextlib
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator

from callcenter.pbx.credentials import ami_secret
from callcenter.pbx.install import install
from callcenter.pbx.process import start, stop
from callcenter.settings import Settings

Message = dict[str, str]


def ensure_running(settings: Settings) -> bool:
    """Install (idempotent, cheap when nothing changed) and start Asterisk unless it runs.
    Returns True if this call started it (the caller should then stop it when done)."""
    install(settings)
    # "already running" still waits until AMI answers (another session may be starting it)
    return start(settings) == "started"


def stop_if_started(settings: Settings, started: bool) -> None:
    if started:
        stop(settings)


class AmiSession:
    """One logged-in AMI connection. Events are buffered in order; `wait_for` consumes them."""

    def __init__(self, settings: Settings, timeout: float = 5.0, events: str = "on"):
        self.sock = socket.create_connection((settings.ami_host, settings.ami_port), timeout=timeout)
        self.sock.settimeout(timeout)
        self._buf = b""
        self.banner = self._read_line()
        self.pending: list[Message] = []
        reply = self.action({"Action": "Login", "Username": settings.ami_username,
                             "Secret": ami_secret(settings), "Events": events})
        if reply.get("Response") != "Success":
            raise RuntimeError(f"AMI login failed: {reply}")

    # -- wire -------------------------------------------------------------------------------
    def _read_line(self) -> str:
        while b"\r\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("AMI closed")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line.decode("utf-8", "replace")

    def _read_message(self, deadline: float) -> Message | None:
        while b"\r\n\r\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise ConnectionError("AMI closed")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\r\n\r\n")
        message: Message = {}
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            key, sep, value = line.partition(": ")
            if not sep:
                continue
            if key == "Output" and key in message:  # Command output: one header per line
                message[key] += "\n" + value
            else:
                # A UserEvent repeats the channel's Uniqueid/Linkedid when its body has them too
                # (the dialplan contract does): same value, keep the first.
                message.setdefault(key, value)
        return message

    def send(self, fields: dict[str, str]) -> str:
        action_id = fields.get("ActionID") or uuid.uuid4().hex
        lines = [f"{k}: {v}" for k, v in fields.items() if k != "ActionID"]
        lines.append(f"ActionID: {action_id}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    def action(self, fields: dict[str, str], timeout: float = 10.0) -> Message:
        """Send an action and return its Response (events read meanwhile stay in `pending`)."""
        action_id = self.send(fields)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_message(deadline)
            if msg is None:
                raise TimeoutError(f"no response to {fields.get('Action')}")
            if msg.get("ActionID") == action_id and "Response" in msg:
                return msg
            if "Event" in msg:
                self.pending.append(msg)

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 10.0) -> Message:
        """Return (and consume) the first event, buffered or new, for which predicate is true."""
        for i, msg in enumerate(self.pending):
            if predicate(msg):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_message(deadline)
            if msg is None:
                seen = ", ".join(sorted({m.get("Event", "?") for m in self.pending}))
                raise TimeoutError(f"event not seen within {timeout} s (saw: {seen})")
            if "Event" not in msg:
                continue
            if predicate(msg):
                return msg
            self.pending.append(msg)

    def command(self, command: str) -> str:
        reply = self.action({"Action": "Command", "Command": command})
        return reply.get("Output", "")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send({"Action": "Logoff"})
        self.sock.close()

    def __enter__(self) -> AmiSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def user_event(name: str, **fields: str) -> Callable[[Message], bool]:
    """Predicate: a UserEvent `name` whose headers include `fields` (e.g. Linkedid=...)."""
    def match(msg: Message) -> bool:
        return (msg.get("Event") == "UserEvent" and msg.get("UserEvent") == name
                and all(msg.get(k) == v for k, v in fields.items()))
    return match


def originate_local(ami: AmiSession, exten: str, context: str, *, application: str = "Playback",
                    data: str = "silence/10", variables: dict[str, str] | None = None,
                    channel_id: str | None = None, timeout_ms: int = 30000) -> tuple[str, str]:
    """Async Originate of Local/<exten>@<context>; the ;1 half runs `application(data)` (default: it
    keeps sending silence, see ASTERISK-NOTES "Timing trap"), the ;2 half runs the dialplan.

    Returns (uniqueid of ;1 == the call's Linkedid, uniqueid of ;2 == ${UNIQUEID} in `context`).
    `variables` are set on ;1; prefix a name with `__` to make it reach ;2 as well.
    """
    channel_id = channel_id or f"test-{uuid.uuid4().hex[:12]}"
    other_id = f"{channel_id}-2"
    fields = {
        "Action": "Originate", "Channel": f"Local/{exten}@{context}", "Application": application,
        "Data": data, "Async": "true", "Timeout": str(timeout_ms),
        "ChannelId": channel_id, "OtherChannelId": other_id,
    }
    if variables:
        fields["Variable"] = ",".join(f"{k}={v}" for k, v in variables.items())
    reply = ami.action(fields)
    if reply.get("Response") != "Success":
        raise RuntimeError(f"Originate refused: {reply}")
    return channel_id, other_id


@contextlib.contextmanager
def agi_port_lock(settings: Settings) -> Iterator[None]:
    """Cross-process lock for the FastAGI port (settings.agi_port). Parallel test sessions share one
    Asterisk, whose dialplan always calls that port: a test that runs its own FastAGI server there,
    or needs it to be down, holds this lock for as long as it does."""
    import fcntl
    from pathlib import Path

    path = Path(settings.state_dir) / "fastagi-port.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def hold_tcp_port(host: str, port: int, wait: float = 120.0) -> Iterator[socket.socket]:
    """Bind host:port without listening, so connections to it are refused and nobody else can start a
    server there meanwhile (e.g. to prove the FastAGI-down path). Keep the hold short. Waits up to
    `wait` seconds for a server there to go away; fails clearly otherwise."""
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((host, port))
            break
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host}:{port} stays in use (a FastAGI server runs): this test needs it free")
            time.sleep(1.0)
    try:
        yield sock
    finally:
        sock.close()


def hangup_channels(ami: AmiSession, pattern: str) -> None:
    """Hang up every channel whose name matches the regex (cleanup after a test)."""
    ami.action({"Action": "Hangup", "Channel": f"/{pattern}/"})


def queue_callers(ami: AmiSession, queue: str) -> list[str]:
    out = ami.command(f"queue show {queue}")
    return re.findall(r"^\s+\d+\. (\S+)", out, re.M)


def sip_register(settings: Settings, username: str, password: str, expires: int = 60,
                 timeout: float = 3.0, local_host: str | None = None) -> int:
    """REGISTER `username` (an operator endpoint) to our PJSIP over UDP with digest auth, like a
    softphone would; returns the final SIP status code (200 = registered; with expires=0 every
    contact of the endpoint is removed). A minimal UAC: enough to prove the generated passwords and `status()` work."""
    import hashlib

    host, port = settings.sip_host, settings.sip_port
    local = local_host or host  # the phone's own address (another host than the registrar's)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((local, 0))
        sock.settimeout(timeout)
        local_port = sock.getsockname()[1]
        call_id, tag = uuid.uuid4().hex, uuid.uuid4().hex[:10]
        uri = f"sip:{host}:{port}"

        def request(cseq: int, authorization: str | None) -> bytes:
            lines = [
                f"REGISTER {uri} SIP/2.0",
                f"Via: SIP/2.0/UDP {local}:{local_port};branch=z9hG4bK{uuid.uuid4().hex};rport",
                "Max-Forwards: 70",
                f"From: <sip:{username}@{host}>;tag={tag}",
                f"To: <sip:{username}@{host}>",
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} REGISTER",
                # expires=0 with `*` removes every binding of the AOR, whichever socket made it
                "Contact: *" if expires == 0 else f"Contact: <sip:{username}@{local}:{local_port}>",
                f"Expires: {expires}",
                "User-Agent: callcenter-live-test",
            ]
            if authorization:
                lines.append(f"Authorization: {authorization}")
            lines.append("Content-Length: 0")
            return ("\r\n".join(lines) + "\r\n\r\n").encode()

        def final_response() -> tuple[int, str]:
            while True:
                data, _ = sock.recvfrom(65536)
                text = data.decode("utf-8", "replace")
                if not text.startswith("SIP/2.0 "):
                    continue  # e.g. an OPTIONS qualify request from Asterisk
                code = int(text.split()[1])
                if code >= 200:
                    return code, text

        sock.sendto(request(1, None), (host, port))
        code, text = final_response()
        if code != 401:
            return code
        challenges = re.findall(r"^WWW-Authenticate:\s*Digest\s+(.*)$", text, re.M | re.I)
        params = {}
        for challenge in challenges:
            candidate = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
            if candidate.get("algorithm", "MD5").upper() == "MD5":
                params = candidate
                break
        if not params:
            raise RuntimeError(f"no MD5 digest challenge in: {challenges}")

        def md5(s: str) -> str:
            return hashlib.md5(s.encode()).hexdigest()

        ha1 = md5(f"{username}:{params['realm']}:{password}")
        ha2 = md5(f"REGISTER:{uri}")
        auth = (f'Digest username="{username}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
                f'uri="{uri}", algorithm=MD5')
        if "auth" in params.get("qop", "").split(","):
            cnonce = uuid.uuid4().hex[:16]
            response = md5(f"{ha1}:{params['nonce']}:00000001:{cnonce}:auth:{ha2}")
            auth += f', qop=auth, nc=00000001, cnonce="{cnonce}"'
        else:
            response = md5(f"{ha1}:{params['nonce']}:{ha2}")
        auth += f', response="{response}"'
        if "opaque" in params:
            auth += f', opaque="{params["opaque"]}"'
        sock.sendto(request(2, auth), (host, port))
        code, _ = final_response()
        return code
