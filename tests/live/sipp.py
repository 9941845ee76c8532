"""SIPp as the carrier: citizens calling 12345 over SIP/UDP through the trunk endpoint ([trunk] in
asterisk/pjsip.conf, identified by its address), with G.711 audio and RFC 4733 (RFC 2833) DTMF.

Each citizen behaviour (`Behaviour`) is one SIPp scenario and one pcap: µ-law audio (pink noise from
sox, standing in for the room the caller is in) with the keys as telephone-events at fixed times after
the answer, in ONE RTP stream (one SSRC, continuous sequence numbers and timestamps, as a phone sends
it: Asterisk's loss count then means loss, not a stream change). SIPp plays the pcap from the ACK on
and hangs up at `hangup_s`. The key times follow the real prompts' lengths (greeting 14.9 s, menu
prompts 3.3 s each...), so a key lands where a citizen would press it.

Used by tests/live/test_sip_trunk_live.py and benchmarks/sip_load.py. Needs `sipp` (Debian package
sip-tester, installed by scripts/setup) and `sox`.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

PT_PCMU = 0
PT_EVENT = 101  # telephone-event, as offered in the SDP below
PACKET_MS = 20
SAMPLES = 8 * PACKET_MS  # 8 kHz
KEY_MS = 100  # a key held 100 ms (5 event packets), then 3 end packets, then 100 ms before the next
KEY_GAP_MS = 100
EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}
GREETING_S = 14.9  # hotline/welcome + hotline/emergency_notice
MENU_KEY_S = GREETING_S + 3.6  # the main menu's first option heard (menu_consultation, 3.3 s)
UNKNOWN_CASE = "20260304999999"  # a progress enquiry for a case that does not exist


@dataclass(frozen=True)
class Behaviour:
    """A citizen: which keys when (seconds after the answer), when they hang up, what the menu
    should make of the call (the reason [hotline-queue] reports; "" = hung up in the menu)."""

    name: str
    keys: tuple[tuple[float, str], ...]
    hangup_s: float
    reason: str
    weight: int = 1

    @property
    def menu_call(self) -> bool:
        """Counts for the '>= 99.9 % of menu calls complete' figure: it chose a branch."""
        return bool(self.reason)


def _progress_keys() -> tuple[tuple[float, str], ...]:
    # 5 during the menu; the number typed 2 s into "enter the case number" (6.1 s); not found: "not
    # found, once more" (4.0 s) + the same prompt again, typed 2 s into it; then "not found, an
    # operator" (6.2 s) and the queue
    first = MENU_KEY_S + 2.1
    second = first + 14 * (KEY_MS + 60 + KEY_GAP_MS) / 1000 + 4.0 + 2.5
    return ((MENU_KEY_S, "5"), (first, UNKNOWN_CASE), (second, UNKNOWN_CASE))


# Press during the menu (where most do), 1 during the greeting (a repeat caller who knows the menu:
# the key carries), 0 and then stay queued 12 s, hang up during the greeting or during the menu.
# Queue arrival: case branches ~ key + 0.1 + 2.0 (number is) + 3 (14 digits) + 4.1 (transfer); then
# QUEUED_S in the queue before hanging up (the margin a slow menu has before a caller is lost).
QUEUED_S = 4.0
BEHAVIOURS: tuple[Behaviour, ...] = (
    Behaviour("consult-early-key", ((3.0, "1"),), 3.0 + 10.5 + QUEUED_S, "consultation", weight=2),
    Behaviour("consult", ((MENU_KEY_S, "1"),), MENU_KEY_S + 10.5 + QUEUED_S, "consultation"),
    Behaviour("suggest", ((MENU_KEY_S, "2"),), MENU_KEY_S + 10.5 + QUEUED_S, "suggestion"),
    Behaviour("complain", ((MENU_KEY_S, "3"),), MENU_KEY_S + 10.5 + QUEUED_S, "complaint"),
    Behaviour("urgent", ((MENU_KEY_S, "4"),), MENU_KEY_S + 10.5 + QUEUED_S, "urgent_help"),
    Behaviour("progress", _progress_keys(), _progress_keys()[-1][0] + 3.7 + 6.3 + QUEUED_S, "not_found"),
    Behaviour("operator-queued", ((MENU_KEY_S, "0"),), MENU_KEY_S + 4.2 + 12.0, "operator"),
    Behaviour("hangup-greeting", (), 2.0, ""),
    Behaviour("hangup-menu", (), MENU_KEY_S + 3.0, ""),
)
BY_NAME = {b.name: b for b in BEHAVIOURS}


# ---------------------------------------------------------------------------------------------
# the pcap


def mulaw_noise(seconds: float, volume: float = 0.05) -> bytes:
    """`seconds` of quiet pink noise as 8 kHz µ-law, from sox."""
    out = subprocess.run(["sox", "-q", "-n", "-r", "8000", "-c", "1", "-t", "raw", "-e", "mu-law", "-b", "8", "-",
                          "synth", f"{seconds:.2f}", "pinknoise", "vol", str(volume)],
                         check=True, capture_output=True)
    return out.stdout


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(rtp: bytes, src: tuple[str, int] = ("127.0.0.2", 6000), dst: tuple[str, int] = ("127.0.0.1", 10000)) -> bytes:
    """Ethernet + IPv4 + UDP around one RTP packet (SIPp replaces the addresses and ports)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(rtp), 0) + rtp
    ip_head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                          bytes(map(int, src[0].split("."))), bytes(map(int, dst[0].split("."))))
    ip_head = ip_head[:10] + struct.pack("!H", _checksum(ip_head)) + ip_head[12:]
    return b"\0" * 12 + b"\x08\x00" + ip_head + udp


def rtp_packets(keys: tuple[tuple[float, str], ...], seconds: float, audio: bytes,
                ssrc: int = 0x12345) -> list[tuple[float, bytes]]:
    """(send time in s, RTP packet) for `seconds` of audio with the keys as telephone-events
    replacing the audio while they sound, in one stream."""
    presses: dict[int, int] = {}  # packet slot -> event code starting there
    for at, digits in keys:
        slot = round(at * 1000 / PACKET_MS)
        for ch in digits:
            presses[slot] = EVENTS[ch]
            slot += (KEY_MS + 3 * PACKET_MS + KEY_GAP_MS) // PACKET_MS
    packets: list[tuple[float, bytes]] = []
    seq, slot, total = 1, 0, round(seconds * 1000 / PACKET_MS)
    marker = True
    while slot < total:
        if slot in presses:
            event, start_ts = presses[slot], slot * SAMPLES
            steps = KEY_MS // PACKET_MS
            for i in range(steps + 3):  # 5 packets while held, then the end packet three times
                end = i >= steps
                duration = SAMPLES * min(i + 1, steps)
                payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
                head = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | PT_EVENT, seq & 0xFFFF, start_ts, ssrc)
                packets.append(((slot + i) * PACKET_MS / 1000, head + payload))
                seq += 1
            slot += steps + 3
            marker = True
            continue
        chunk = audio[(slot * SAMPLES) % len(audio):][:SAMPLES].ljust(SAMPLES, b"\xff")
        head = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | PT_PCMU, seq & 0xFFFF, slot * SAMPLES, ssrc)
        packets.append((slot * PACKET_MS / 1000, head + chunk))
        seq, slot, marker = seq + 1, slot + 1, False
    return packets


def write_pcap(path: Path, packets: list[tuple[float, bytes]]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # linktype 1: Ethernet
    for at, rtp in packets:
        frame = _frame(rtp)
        sec, usec = int(at), round((at - int(at)) * 1e6)
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


# ---------------------------------------------------------------------------------------------
# the scenario

# The SDP's connection address is RTP_SINK, where nothing listens: Asterisk sends every prompt's RTP
# there (its full cost) while SIPp sends from its own address ([trunk] has rtp_symmetric = no, as a
# carrier's SBC needs no NAT help). Why: SIPp plays a pcap through a raw socket per call, bound to its
# address, and the kernel copies every UDP packet to that address into each of them: with Asterisk's
# RTP arriving there, n calls cost n^2 copies (a core at ~200 calls), charged partly to Asterisk.
RTP_SINK = "127.0.0.9"
_SDP = """v=0
o=citizen 1 1 IN IP4 {sink}
s=-
c=IN IP4 {sink}
t=0 0
m=audio [auto_media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
"""


def scenario_xml(behaviour: Behaviour, pcap: Path, routed: bool = False) -> str:
    """One call: INVITE 12345 (From = [caller_prefix][call_number]), answer, the pcap, BYE at hangup_s.
    The INVITE -> 200 time is SIPp's response time 1 (rtd), the call set-up time. routed: a proxy
    answers (the SIP front, docs/scaling.md): ACK and BYE follow its Record-Route to the node's Contact."""
    sdp = _SDP.format(sink=RTP_SINK).replace("\n", "\r\n")
    rrs = ' rrs="true"' if routed else ""
    in_dialog_uri = "[next_url]" if routed else "sip:12345@[remote_ip]:[remote_port]"
    route = "\n      [routes]" if routed else ""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="citizen {behaviour.name}">
  <send retrans="500">
    <![CDATA[
      INVITE sip:12345@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[caller_prefix][call_number]@[local_ip]:[local_port]>;tag=[pid]c[call_number]
      To: <sip:12345@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[caller_prefix][call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

{sdp}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"{rrs}/>
  <send>
    <![CDATA[
      ACK {in_dialog_uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[caller_prefix][call_number]@[local_ip]:[local_port]>;tag=[pid]c[call_number]
      To: <sip:12345@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK{route}
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{round(behaviour.hangup_s * 1000)}"/>
  <send retrans="500">
    <![CDATA[
      BYE {in_dialog_uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[caller_prefix][call_number]@[local_ip]:[local_port]>;tag=[pid]c[call_number]
      To: <sip:12345@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE{route}
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
  <ResponseTimeRepartition value="50, 100, 200, 500, 1000, 2000"/>
  <CallLengthRepartition value="5000, 15000, 30000, 45000, 60000"/>
</scenario>
"""


def prepare(workdir: Path, behaviours: tuple[Behaviour, ...] = BEHAVIOURS, routed: bool = False) -> dict[str, Path]:
    """Write each behaviour's pcap and scenario into workdir; name -> scenario path."""
    workdir.mkdir(parents=True, exist_ok=True)
    audio = mulaw_noise(9.0)  # looped
    paths = {}
    for b in behaviours:
        pcap = workdir / f"{b.name}.pcap"
        write_pcap(pcap, rtp_packets(b.keys, b.hangup_s + 1.0, audio))
        xml = workdir / f"{b.name}.xml"
        xml.write_text(scenario_xml(b, pcap, routed), encoding="ascii")
        paths[b.name] = xml
    return paths


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise RuntimeError("sipp is missing: apt-get install sip-tester (scripts/setup installs it)")
    return path


def sipp_argv(scenario: Path, *, target: str, local_ip: str, local_port: int, media_port: int, caller_prefix: str,
              calls: int, every_ms: int = 1000, trace_dir: Path | None = None) -> list[str]:
    """SIPp placing `calls` calls, one every `every_ms` ms, from local_ip (the carrier's address)."""
    argv = [sipp_binary(), target, "-sf", str(scenario), "-i", local_ip, "-mi", local_ip, "-p", str(local_port),
            "-mp", str(media_port), "-key", "caller_prefix", caller_prefix, "-r", "1", "-rp", str(every_ms),
            "-m", str(calls), "-l", str(calls + 10), "-nostdin", "-max_socket", "4096", "-recv_timeout", "120000"]
    if trace_dir is not None:
        base = str(trace_dir / scenario.stem)
        argv += ["-trace_stat", "-stf", f"{base}_stat.csv", "-fd", "5", "-trace_rtt", "-rtt_freq", "1",
                 "-trace_err", "-error_file", f"{base}_errors.log"]
    return argv
