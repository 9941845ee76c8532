"""The SIPp callers' RTP (tests/live/sipp.py): one stream per call with the keys inside it, so what
Asterisk counts as lost is loss (the SIP load benchmark's RTP loss figure, issue 16) and the keys are
RFC 4733 events a carrier would send."""
from __future__ import annotations

import struct

from tests.live import sipp


def _parse(rtp: bytes) -> tuple[int, int, int, int, bytes]:
    first, second, seq, ts, ssrc = struct.unpack("!BBHII", rtp[:12])
    return second & 0x7F, seq, ts, ssrc, rtp[12:]


def test_keys_travel_as_rfc4733_events_inside_one_continuous_stream():
    packets = sipp.rtp_packets(((1.0, "5"), (2.0, "1#")), 3.0, b"\x7f" * 160)
    parsed = [_parse(p) for _, p in packets]
    assert {ssrc for *_, ssrc, _ in parsed} == {0x12345}
    seqs = [seq for _, seq, *_ in parsed]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap: a lost packet is a real loss
    times = [at for at, _ in packets]
    assert times == sorted(times) and times[-1] < 3.0

    events = [(at, pt, ts, body) for (at, _), (pt, _, ts, _, body) in zip(packets, parsed) if pt == sipp.PT_EVENT]
    ends = [(at, ts, body[0]) for at, _, ts, body in events if body[1] & 0x80]
    assert [code for *_, code in ends][::3] == [5, 1, 11]  # each key's end packet three times; '#' = 11
    assert abs(ends[0][0] - 1.1) < 0.001 and ends[0][1] == 8000  # starts at 1.0 s: timestamp 8000
    # a key's packets share its start timestamp, durations grow to 100 ms (800 samples)
    first_key = [body for _, _, ts, body in events if ts == 8000]
    assert [struct.unpack("!H", b[2:4])[0] for b in first_key] == [160, 320, 480, 640, 800, 800, 800, 800]
    # audio everywhere else, µ-law payload type 0, 160 samples per 20 ms, timestamps following time
    audio = [(at, ts) for (at, _), (pt, _, ts, _, _) in zip(packets, parsed) if pt == sipp.PT_PCMU]
    assert all(ts == round(at * 8000) for at, ts in audio)
    assert len(audio) + len(events) == len(packets) == 150  # one packet per 20 ms slot of the 3 s


def test_a_scenario_calls_12345_from_the_caller_number_and_hangs_up_when_the_citizen_does(tmp_path):
    behaviour = sipp.BY_NAME["consult"]
    xml = sipp.scenario_xml(behaviour, tmp_path / "x.pcap")
    assert "INVITE sip:12345@[remote_ip]:[remote_port] SIP/2.0" in xml
    assert "From: <sip:[caller_prefix][call_number]@" in xml
    assert f'<pause milliseconds="{round(behaviour.hangup_s * 1000)}"/>' in xml
    assert "RTP/AVP 0 101" in xml and "telephone-event/8000" in xml
    assert f"c=IN IP4 {sipp.RTP_SINK}" in xml
