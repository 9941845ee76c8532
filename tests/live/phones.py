"""Real SIP phones for live tests: a harness around baresip (Debian 12's baresip 1.0.0).

Each phone is one ``baresip`` process with its own config directory under a temp dir, registered
to our Asterisk (``settings.sip_host:sip_port``) as one PJSIP endpoint, auto-answering, playing an
8 kHz mono wav as its microphone and discarding what it hears (``aubridge``; see ASTERISK-NOTES
"Softphones": ``ausine`` only does 48 kHz and drops the call). It is remote-controlled over
baresip's ``ctrl_tcp`` module (netstring-framed JSON on 127.0.0.1), which also reports call events.

API (all synchronous; fine to call from async tests, every call returns within its timeout)::

    from tests.live.phones import start_phones, operator_phones

    with operator_phones(settings, tmp_path, ["8001", "8002"]) as phones:   # op8001, op8002
        phone = phones["op8001"]
        phone.wait_event("CALL_ESTABLISHED", timeout=20)    # auto-answered an incoming call
        phone.command("hold") / phone.command("resume") / phone.hangup()
        phone.dial("8002")                 # -> sip:8002@<sip host>:<port> (context `operators`)
        phone.transfer("8003")             # blind transfer (REFER) of the current call

    # any endpoint, any password (e.g. unit phones the provisioning defines):
    with start_phones(settings, tmp_path, {"unit-water-a": "secret..."}, answermode="auto") as phones: ...

- ``start_phones(settings, tmp_dir, endpoints, *, answermode="auto", audio_wav=None,
  register_timeout=15.0) -> Phones``: ``endpoints`` is an iterable of endpoint names (passwords
  then come from the install's ``var/sip-secrets.json``) or a mapping endpoint -> password. Returns
  once ``pjsip show contacts`` lists every endpoint; raises ``PhoneError`` (and stops what it
  started) otherwise. ``answermode``: ``auto`` | ``manual`` | ``early``. ``record_dir``: each phone
  writes what it hears to ``record_dir/<endpoint>/dump-<time>-dec.wav`` (and says, ``-enc.wav``).
- ``operator_phones(settings, tmp_dir, extensions=("8001",), **kw)``: the same for ``op<ext>``.
- ``Phones``: a context manager; ``phones[endpoint] -> Phone``, iteration, ``stop()``.
- ``Phone``: ``endpoint``, ``command(name, params="", timeout=5.0) -> dict`` (the raw ctrl_tcp
  answer: ``{"ok": bool, "data": str}``), ``dial(target)``, ``hangup()``, ``accept()``,
  ``transfer(target)``, ``events`` (list of dicts as baresip sends them: ``type`` such as
  ``REGISTER_OK``, ``CALL_INCOMING``, ``CALL_ESTABLISHED``, ``CALL_CLOSED``; ``peeruri``, ...),
  ``wait_event(type, timeout=10.0, since=0) -> dict`` (first matching event at index >= since),
  ``stop()`` (quit: unregisters, then the process ends; killed if it does not).

Two test sessions must not register the same endpoint at the same time: the aors keep one contact
(``max_contacts=1``, ``remove_existing=yes``), so the second registration steals the first's calls.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import wave
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from callcenter.pbx.credentials import sip_passwords
from callcenter.pbx.process import endpoint_contacts
from callcenter.settings import Settings

BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
MODULE_PATH = "/usr/lib/baresip/modules"


class PhoneError(RuntimeError):
    pass


def tone_wav(path: Path, seconds: float = 4.0, hz: float = 440.0) -> Path:
    """An 8 kHz mono 16-bit wav (what aufile plays into the call as the phone's microphone)."""
    if path.exists():
        return path
    rate = 8000
    frames = bytearray()
    for i in range(int(seconds * rate)):
        frames += struct.pack("<h", int(6000 * math.sin(2 * math.pi * hz * i / rate)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Phone:
    """One baresip process registered as one endpoint."""

    def __init__(self, settings: Settings, endpoint: str, password: str, config_dir: Path, *,
                 answermode: str, audio_wav: Path, record_dir: Path | None = None,
                 netns: str | None = None, local_ip: str = "127.0.0.1", tls: bool = False,
                 mediaenc: str | None = None) -> None:
        # netns: run baresip in that network namespace (tests/live/netns.py), on its address local_ip;
        # tls: SIP over TLS to sip_tls_port; mediaenc: baresip's media encryption (srtp-mand: SRTP only)
        self.settings = settings
        self.endpoint = endpoint
        self.config_dir = config_dir
        self.ctrl_host = local_ip
        self.ctrl_port = _free_port()
        self.events: list[dict[str, Any]] = []
        self._answers: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._tokens = 0
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        config_dir.mkdir(parents=True, exist_ok=True)
        if record_dir is not None:
            record_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "config").write_text("\n".join([
            "poll_method epoll",
            f"sip_listen {local_ip if netns else settings.sip_host}:0",
            "audio_player aubridge,x",
            f"audio_source aufile,{audio_wav}",
            "audio_alert aubridge,x",
            f"module_path {MODULE_PATH}",
            "module g711.so",
            *(["module srtp.so"] if mediaenc else []),
            "module aufile.so",
            "module aubridge.so",
            "module_app account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen {local_ip}:{self.ctrl_port}",
            # what the phone hears and says, as dump-<time>-dec.wav / -enc.wav (baresip's sndfile filter)
            *(["module sndfile.so", f"snd_path {record_dir}"] if record_dir is not None else []),
            "",
        ]))
        host = f"{settings.sip_host}:{settings.sip_port}"
        if tls:
            host = f"{settings.sip_host}:{settings.sip_tls_port};transport=tls"
        uri = f"sip:{endpoint}@{host}"
        media = f";mediaenc={mediaenc}" if mediaenc else ""
        # The password sits in a 0600 file under the test's temp dir, never on a command line.
        accounts = config_dir / "accounts"
        accounts.write_text(f"<{uri}>;auth_pass={password};answermode={answermode};regint=60{media}\n")
        os.chmod(accounts, 0o600)
        self._log = open(config_dir / "baresip.log", "wb")
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.process = subprocess.Popen([*prefix, BARESIP, "-f", str(config_dir)], stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    # -- ctrl_tcp -------------------------------------------------------------------------------
    def _connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise PhoneError(f"baresip for {self.endpoint} exited: {self.log_tail()}")
            try:
                self._sock = socket.create_connection((self.ctrl_host, self.ctrl_port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise PhoneError(f"baresip for {self.endpoint}: no ctrl_tcp on {self.ctrl_port}") from None
                time.sleep(0.1)
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name=f"baresip-{self.endpoint}", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        buf = b""
        sock = self._sock
        while sock is not None:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while True:
                length, colon, rest = buf.partition(b":")
                if not colon or not length.isdigit() or len(rest) < int(length) + 1:
                    break
                n = int(length)
                body, buf = rest[:n], rest[n + 1:]  # skip the trailing ","
                try:
                    msg = json.loads(body)
                except ValueError:
                    continue
                with self._cond:
                    if msg.get("event"):
                        self.events.append(msg)
                    elif "token" in msg:
                        self._answers[str(msg["token"])] = msg
                    self._cond.notify_all()

    def command(self, name: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Run one baresip command (``dial``, ``hangup``, ``accept``, ``hold``, ``resume``, ``transfer``...)."""
        if self._sock is None:
            raise PhoneError(f"phone {self.endpoint} is not running")
        with self._cond:
            self._tokens += 1
            token = f"t{self._tokens}"
        body = json.dumps({"command": name, "params": params, "token": token}).encode()
        self._sock.sendall(str(len(body)).encode() + b":" + body + b",")
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._answers:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PhoneError(f"phone {self.endpoint}: no answer to {name!r} within {timeout} s")
                self._cond.wait(remaining)
            return self._answers.pop(token)

    def _uri(self, target: str) -> str:
        if target.startswith("sip:"):
            return target
        return f"sip:{target}@{self.settings.sip_host}:{self.settings.sip_port}"

    def dial(self, target: str) -> dict[str, Any]:
        return self.command("dial", self._uri(target))

    def hangup(self) -> dict[str, Any]:
        return self.command("hangup")

    def accept(self) -> dict[str, Any]:
        return self.command("accept")

    def transfer(self, target: str) -> dict[str, Any]:
        return self.command("transfer", self._uri(target))

    def wait_event(self, event_type: str, timeout: float = 10.0, since: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for msg in self.events[since:]:
                    if msg.get("type") == event_type:
                        return msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [m.get("type") for m in self.events]
                    raise PhoneError(f"phone {self.endpoint}: no {event_type} within {timeout} s (saw {seen})")
                self._cond.wait(remaining)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.config_dir / "baresip.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None and self._sock is not None:
            with contextlib.suppress(Exception):
                self.command("quit", timeout=1.0)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(2.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        self._log.close()


class Phones:
    """The phones started together; ``with`` stops them all."""

    def __init__(self, phones: list[Phone]) -> None:
        self._phones = {p.endpoint: p for p in phones}

    def __getitem__(self, endpoint: str) -> Phone:
        return self._phones[endpoint]

    def __iter__(self) -> Iterator[Phone]:
        return iter(self._phones.values())

    def __len__(self) -> int:
        return len(self._phones)

    def stop(self) -> None:
        for phone in self._phones.values():
            phone.stop()

    def __enter__(self) -> Phones:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_phones(settings: Settings, tmp_dir: Path, endpoints: Iterable[str] | Mapping[str, str], *,
                 answermode: str = "auto", audio_wav: Path | None = None,
                 register_timeout: float = 15.0, record_dir: Path | None = None) -> Phones:
    """Start one baresip per endpoint and wait until Asterisk lists each one's contact."""
    if isinstance(endpoints, Mapping):
        wanted = dict(endpoints)
    else:
        known = sip_passwords(settings)
        wanted = {}
        for name in endpoints:
            if name not in known:
                raise PhoneError(f"no SIP password for {name} in the install (var/sip-secrets.json); pass it")
            wanted[name] = known[name]
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    wav = audio_wav or tone_wav(tmp_dir / "phone-tone.wav")
    started: list[Phone] = []
    try:
        for name, password in wanted.items():
            started.append(Phone(settings, name, password, tmp_dir / f"baresip-{name}",
                                 answermode=answermode, audio_wav=wav,
                                 record_dir=record_dir / name if record_dir is not None else None))
        for phone in started:
            phone._connect(timeout=5.0)
        deadline = time.monotonic() + register_timeout
        missing = set(wanted)
        while missing:
            contacts = endpoint_contacts(settings)
            missing = {name for name in wanted if name not in contacts}
            if not missing:
                break
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.endpoint}:\n{p.log_tail(8)}" for p in started if p.endpoint in missing)
                raise PhoneError(f"not registered within {register_timeout} s: {sorted(missing)}\n{tails}")
            time.sleep(0.2)
    except BaseException:
        for phone in started:
            phone.stop()
        raise
    return Phones(started)


def operator_phones(settings: Settings, tmp_dir: Path, extensions: Iterable[str] = ("8001",),
                    **kwargs: Any) -> Phones:
    """Phones for operators ``op<ext>`` with the install's generated passwords."""
    return start_phones(settings, tmp_dir, [f"op{ext}" for ext in extensions], **kwargs)
