#!/usr/bin/env python3
"""AMI event ingest: how fast our client (callcenter.ami) takes in events, against the rate at which
Asterisk itself puts them out, during a burst of originated Local calls — in one run.

Two AMI sessions with ``Events: on`` watch the same burst on the project's real Asterisk (it must
already run: ``callcenter asterisk start``):

- a *raw reader*, in its own process, that only records (arrival time, bytes): Asterisk's output rate
  to a consumer that does no work at all;
- our ``AMIClient``, in this process, with one subscriber that appends every event to a list.

A second ``AMIClient`` session (filtered to OriginateResponse events) originates the calls
(``Local/s@test-citizen``, ``Application: Wait``, ``Data: 0.2``, ``--inflight`` at a time).

Reported: events/s for both over the burst, per-event lag of our client behind the raw reader (the
same event, matched by position in the stream; both processes use CLOCK_MONOTONIC), and the client's
capacity: the captured bytes replayed through the client's parser and dispatch into a list subscriber,
in CPU seconds of one core.

    .venv/bin/python benchmarks/ami_ingest.py --calls 1000 --inflight 100
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from callcenter.ami import AMIClient, AMINotConnected, Message, Parser  # noqa: E402


def _settings():
    from callcenter.pbx.credentials import ami_secret
    from callcenter.settings import get_settings

    settings = get_settings()
    return settings, ami_secret(settings)


# -- the raw reader (child process) ----------------------------------------------------------------
async def raw_reader(out_path: str) -> None:
    settings, secret = _settings()
    reader, writer = await asyncio.open_connection(settings.ami_host, settings.ami_port)
    writer.write(
        f"Action: Login\r\nActionID: raw\r\nUsername: {settings.ami_username}\r\nSecret: {secret}\r\n"
        "Events: on\r\n\r\n".encode()
    )
    buf = b""
    while b"Authentication accepted" not in buf:
        chunk = await reader.read(65536)
        if not chunk:
            raise SystemExit("raw reader: login failed")
        buf += chunk
    chunks: list[tuple[float, bytes]] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)

    async def pump() -> None:
        while True:
            data = await reader.read(262144)
            if not data:
                return
            chunks.append((time.monotonic(), data))

    task = asyncio.create_task(pump())
    await stop.wait()
    task.cancel()
    writer.close()
    with open(out_path, "wb") as fh:
        pickle.dump(chunks, fh)


def timestamped_events(chunks: list[tuple[float, bytes]]) -> list[tuple[float, Message]]:
    """Events of a captured stream with the arrival time of the chunk that completed each."""
    parser = Parser(expect_banner=False)
    out: list[tuple[float, Message]] = []
    for stamp, data in chunks:
        for msg in parser.feed(data):
            if msg.is_event:
                out.append((stamp, msg))
    return out


# -- the measurement ---------------------------------------------------------------------------------
def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _peak_rate(stamps: list[float], window: float = 0.25) -> float:
    best, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best / window


def replay_capacity(chunks: list[tuple[float, bytes]], rounds: int = 3) -> tuple[int, float]:
    """Parse + dispatch the captured bytes through the client's own code into a list subscriber.
    Returns (events, best events per CPU second)."""
    best = 0.0
    count = 0

    async def one() -> tuple[int, float]:
        client = AMIClient("127.0.0.1", 1, "x", "x")
        got: list[Message] = []
        client.subscribe(got.append)
        link = types.SimpleNamespace(pending={}, booted=asyncio.Event())
        parser = Parser(expect_banner=False)
        start = time.process_time()
        for _, data in chunks:
            for msg in parser.feed(data):
                client._dispatch(link, msg)  # the exact per-message path of the live client
        return len(got), time.process_time() - start

    for _ in range(rounds):
        count, cpu = asyncio.run(one())
        best = max(best, count / cpu if cpu > 0 else 0.0)
    return count, best


async def measure(calls: int, inflight: int, wait: str) -> tuple[list[tuple[float, bytes]], dict]:
    settings, secret = _settings()
    from callcenter.pbx.process import running_pids

    pids = running_pids(settings)
    if not pids:
        raise SystemExit("Asterisk is not running: callcenter asterisk start")
    # Two raw readers: A is the reference; B, identical, is the control that shows how far apart
    # Asterisk (and the OS) deliver the same event to two sessions that do no work at all.
    captures = []
    children = []
    for _ in range(2):
        capture = tempfile.NamedTemporaryFile(prefix="ami-raw-", suffix=".pickle", delete=False)
        capture.close()
        captures.append(capture.name)
        children.append(subprocess.Popen([sys.executable, __file__, "--raw-reader", capture.name],
                                         stdout=subprocess.PIPE, text=True))
    try:
        for child in children:
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 10)
            if line.strip() != "ready":
                raise SystemExit("raw reader did not start")
        client = AMIClient(settings.ami_host, settings.ami_port, settings.ami_username, secret)
        got: list[tuple[float, Message]] = []
        client.subscribe(lambda msg: got.append((time.monotonic(), msg)))
        run_id = f"ingest-{os.getpid()}-{int(time.time())}-"
        ours_ended: set[str] = set()
        client.subscribe(lambda msg: ours_ended.add(msg.get_first("Uniqueid"))
                         if (msg.get_first("Uniqueid") or "").startswith(run_id) else None, ["Hangup"])
        await client.start()
        # When each read() of the measured session returns (data may have waited in the socket
        # before): the time from there to the subscriber is our own processing.
        arrivals: list[tuple[float, int]] = []  # (time, events dispatched before this chunk)
        link = client._link
        original_read = link.reader.read

        async def timed_read(n: int = -1) -> bytes:
            data = await original_read(n)
            arrivals.append((time.monotonic(), len(got)))
            return data

        link.reader.read = timed_read
        # The calls are originated on a second session that only gets OriginateResponse events:
        # Asterisk serves actions and event output of one session in one thread, so originating on the
        # measured session would delay its events and blur the comparison with the raw reader.
        driver = AMIClient(settings.ami_host, settings.ami_port, settings.ami_username, secret,
                           action_timeout=30.0)
        await driver.start()
        await driver.send_action({"Action": "Filter", "Operation": "Add", "Filter": "Event: OriginateResponse"})
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        cpu_ast0 = sum(_cpu_of(p) for p in pids)
        cpu_self0 = time.process_time()
        sys0 = _system_cpu()
        gate = asyncio.Semaphore(inflight)
        results = {"Success": 0, "Failure": 0, "error": 0}

        async def one(i: int) -> None:
            async with gate:
                try:
                    r = await driver.originate("Local/s@test-citizen", application="Wait", data=wait,
                                               channel_id=f"{run_id}{i}-", dial_timeout=20)
                    results[r.response if r.response in results else "error"] += 1
                except (AMINotConnected, TimeoutError):
                    results["error"] += 1

        await asyncio.gather(*(one(i) for i in range(calls)))
        originated_at = time.monotonic()
        # The calls end `wait` seconds after answer: the burst is over when both legs of every
        # answered call have hung up (other sessions' traffic on the shared PBX does not count).
        deadline = time.monotonic() + 60
        while len(ours_ended) < 2 * results["Success"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the last CDR/CEL events follow the Hangup
        t_end = time.monotonic()
        cpu_ast = sum(_cpu_of(p) for p in pids) - cpu_ast0
        cpu_self = time.process_time() - cpu_self0
        sys1 = _system_cpu()
        machine_busy = (sys1[0] - sys0[0]) / max(1, sys1[1] - sys0[1])
        stats = client.stats
        await client.stop()
        await driver.stop()
        for child in children:
            child.send_signal(signal.SIGTERM)
        captured = []
        for child, path in zip(children, captures):
            child.wait(10)
            with open(path, "rb") as fh:
                captured.append(pickle.load(fh))
        chunks, control_chunks = captured
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        for path in captures:
            os.unlink(path)

    raw = [(t, m) for t, m in timestamped_events(chunks) if t0 <= t <= t_end]
    # arrival time of the chunk each of our events came in
    arrived_at: list[float] = []
    for j, (stamp, first) in enumerate(arrivals):
        upto = arrivals[j + 1][1] if j + 1 < len(arrivals) else len(got)
        arrived_at.extend([stamp] * (upto - len(arrived_at)) if upto > len(arrived_at) else [])
    arrived_at.extend([arrived_at[-1] if arrived_at else 0.0] * (len(got) - len(arrived_at)))
    processing = [got[i][0] - arrived_at[i] for i in range(len(got)) if t0 <= got[i][0] <= t_end]
    ours = [(t, m) for t, m in got if t0 <= t <= t_end]
    # Same event in both streams: match by (name, Uniqueid/ChannelId-ish keys, Timestamp) signature.
    def key(m: Message) -> tuple:
        return (m.name, m.get_first("Timestamp"), m.get_first("Uniqueid") or m.get_first("UniqueID"),
                m.get_first("Variable"), m.get_first("EventName"), m.get_first("ActionID"))

    def lags_behind_raw(events: list[tuple[float, Message]]) -> list[float]:
        raw_times: dict[tuple, list[float]] = {}
        for t, m in raw:
            raw_times.setdefault(key(m), []).append(t)
        out = []
        for t, m in events:
            bucket = raw_times.get(key(m))
            if bucket:
                out.append(t - bucket.pop(0))
        return out

    lags = lags_behind_raw(ours)
    control = lags_behind_raw([(t, m) for t, m in timestamped_events(control_chunks) if t0 <= t <= t_end])
    raw_stamps = [t for t, _ in raw]
    our_stamps = [t for t, _ in ours]
    span_raw = raw_stamps[-1] - raw_stamps[0]
    span_ours = our_stamps[-1] - our_stamps[0]
    return chunks, {
        "calls": calls, "inflight": inflight, "results": results,
        "originate_s": originated_at - t0,
        "raw_events": len(raw), "raw_rate": len(raw) / span_raw, "raw_peak": _peak_rate(raw_stamps),
        "our_events": len(ours), "our_rate": len(ours) / span_ours, "our_peak": _peak_rate(our_stamps),
        "matched": len(lags),
        "lag_p50_ms": 1000 * _pct(lags, 50), "lag_p99_ms": 1000 * _pct(lags, 99),
        "lag_max_ms": 1000 * max(lags),
        "control_p50_ms": 1000 * _pct(control, 50), "control_p99_ms": 1000 * _pct(control, 99),
        "control_max_ms": 1000 * max(control),
        "processing_p50_ms": 1000 * _pct(processing, 50), "processing_p99_ms": 1000 * _pct(processing, 99),
        "processing_max_ms": 1000 * max(processing), "end_lag_ms": 1000 * (our_stamps[-1] - raw_stamps[-1]),
        "cpu_asterisk_s": cpu_ast, "cpu_client_process_s": cpu_self, "machine_busy": machine_busy,
        "cores": os.cpu_count(), "wall_s": t_end - t0,
        "client_events_total": stats.events_received, "dropped": stats.events_dropped,
        "bytes": sum(len(d) for t, d in chunks if t0 <= t <= t_end),
    }


def replay_link_logging(chunks: list[tuple[float, bytes]]) -> dict:
    """The same bytes through the call-control link, which parses each event, updates its channel
    state and writes the call log (A2) to a fresh SQLite store — as every event arrives on the live
    link. Each call of the burst gets its call row first (as the voice menu writes it), so every
    log entry has a call to land on. Returns events, call-log rows written, wall time and rate."""
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from callcenter.callcontrol.link import CallLink
    from ticketing import calls as call_records
    from ticketing.models import CallEvent
    from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

    workdir = tempfile.mkdtemp(prefix="ami-ingest-store-")
    url = f"sqlite:///{workdir}/ingest.db"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    parser = Parser(expect_banner=False)
    linkedids = {m.get_first("Linkedid") for _, d in chunks for m in parser.feed(d)} - {None, ""}
    now = datetime.now(UTC)
    with session_scope(sessions) as s:
        for lid in linkedids:
            call_records.open_call(s, uniqueid=lid, linkedid=lid, started_at=now)

    async def run() -> tuple[int, float, float]:
        link = CallLink(AMIClient("127.0.0.1", 1, "x", "x"), sessions)
        link.calllog.start()  # the log worker, as start() runs it, without an AMI login
        feed = Parser(expect_banner=False)
        events = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for _, data in chunks:
            for msg in feed.feed(data):
                link._on_event(msg)
                events += 1
            await asyncio.sleep(0)  # let the writer run between reads, as on the live link
        assert await link.flush_log(timeout=600)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await link.calllog.stop()
        return events, wall, cpu

    events, wall, cpu = asyncio.run(run())
    with session_scope(sessions) as s:
        rows = s.execute(select(func.count()).select_from(CallEvent)).scalar_one()
    engine.dispose()
    return {"link_events": events, "link_rows": rows, "link_wall_s": wall, "link_cpu_s": cpu,
            "link_rate": events / wall if wall else 0.0}


def report(r: dict) -> str:
    return "\n".join([
        f"burst: {r['calls']} originated Local calls, {r['inflight']} in flight, originates done in "
        f"{r['originate_s']:.2f} s; results {r['results']}",
        f"Asterisk output (raw reader, no work): {r['raw_events']} events, {r['bytes'] / 1e6:.1f} MB, "
        f"{r['raw_rate']:.0f} events/s from first to last event, peak {r['raw_peak']:.0f} events/s (0.25 s window)",
        f"our client (parse + list subscriber, live): {r['our_events']} events, {r['our_rate']:.0f} events/s, "
        f"peak {r['our_peak']:.0f} events/s",
        f"lag behind the raw reader per event (n={r['matched']}): p50 {r['lag_p50_ms']:.1f} ms, "
        f"p99 {r['lag_p99_ms']:.1f} ms, max {r['lag_max_ms']:.1f} ms; last event {r['end_lag_ms']:.1f} ms later",
        f"  control, a second raw reader behind the first: p50 {r['control_p50_ms']:.1f} ms, "
        f"p99 {r['control_p99_ms']:.1f} ms, max {r['control_max_ms']:.1f} ms",
        f"  our processing, read() returning -> subscriber: p50 {r['processing_p50_ms']:.1f} ms, "
        f"p99 {r['processing_p99_ms']:.1f} ms, max {r['processing_max_ms']:.1f} ms",
        f"CPU during the burst: Asterisk {r['cpu_asterisk_s']:.2f} s, this process (both clients) "
        f"{r['cpu_client_process_s']:.2f} s, in {r['wall_s']:.2f} s; all {r['cores']} cores "
        f"{100 * r['machine_busy']:.0f}% busy",
        f"client capacity (same bytes replayed through parser + dispatch, one core): "
        f"{r['replay_rate']:.0f} events/s ({r['replay_rate'] / max(r['raw_peak'], 1):.1f}x Asterisk's peak)",
        f"call-control link (parse + state + call log to SQLite, same bytes): {r['link_events']} events, "
        f"{r['link_rows']} call-log rows in {r['link_wall_s']:.2f} s = {r['link_rate']:.0f} events/s "
        f"({r['link_rate'] / max(r['raw_peak'], 1):.1f}x Asterisk's peak, {r['link_rate'] / max(r['raw_rate'], 1):.1f}x "
        f"its average); CPU {r['link_cpu_s']:.2f} s",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--inflight", type=int, default=100)
    ap.add_argument("--wait", default="0.2", help="seconds the ;1 leg stays up after answer")
    ap.add_argument("--raw-reader", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.raw_reader:
        asyncio.run(raw_reader(args.raw_reader))
        return
    chunks, result = asyncio.run(measure(args.calls, args.inflight, args.wait))
    result["replay_events"], result["replay_rate"] = replay_capacity(chunks)
    result.update(replay_link_logging(chunks))
    print(report(result))


if __name__ == "__main__":
    main()
