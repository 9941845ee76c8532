#!/usr/bin/env python3
"""FastAGI throughput and latency.

1. ``asterisk``: calls through the project's real Asterisk (chroot root from `callcenter asterisk
   install`, must already run) for three AGI implementations of the same four-command script
   (ANSWER, SET VARIABLE, VERBOSE, HANGUP): our ``agi.FastAGIServer``, panoramisk ``fast_agi``, and
   a pyst2 classic AGI script (one process per call). Calls are driven by a minimal AMI client
   written here (raw asyncio socket: Login, Filter, Originate of ``Local/s@bench-agi-<impl>`` with
   ``Application: Playback`` ``silence/1``), ~20 in flight. Completion is the ``BenchDone``
   UserEvent from each call's ``h`` extension, which also carries Asterisk's own timestamps of
   AGI start and hangup (session time).
2. ``sessions``: protocol level, no Asterisk. 10 vs 1,000 emulated Asterisk connections held open at
   once, each answering every command after a simulated media time of 0.5–1.5 s; per-command
   turnaround (reply written -> next command read, measured by the emulator) p50/p99.
3. ``emulated``: no Asterisk. The same four-command script driven by an emulated Asterisk (header
   sent one line per write as res_agi does, ``200 result=...`` answers, ``HANGUP`` after the
   hangup's answer, close on the server's EOF), ~20 calls in flight, per server and event loop:
   server CPU per call, the one figure that separates the servers without Asterisk's noise. With
   ``AGI_BENCH_PROFILE=<prefix>`` set, each server process writes its cProfile stats to
   ``<prefix>.<impl>.<loop>`` (``--rounds 1`` then: one server per file).
4. ``verify``: live protocol check of our server against the real Asterisk (header fields, quoting,
   510/520, missing prompt, unknown script, handler crash -> IVR_NEXT=queue, HANGUP mid-prompt).

Setup done (and undone) by the ``asterisk``/``verify`` modes, nothing else is touched:
- ``asterisk/extensions_bench.conf`` copied to the root's /etc/asterisk; if the rendered
  extensions.conf does not include it yet, ``#tryinclude extensions_bench.conf`` is appended for
  the run and removed afterwards; ``dialplan reload`` only.
- pyst2 mode: the pyenv Python the venv points at is bind-mounted read-only at
  /opt/bench-agi/python inside the root (the root's /root is 0700, so the same path would not be
  reachable by the asterisk user), pyst2 + six and the script are copied to /opt/bench-agi; all
  unmounted and removed afterwards.

Run as root from the project directory:
    .venv/bin/python benchmarks/agi_throughput.py all --calls 1000 --rounds 3
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from agi import AGIChannel, AGIError, AGIHangup, FastAGIServer  # noqa: E402
from agi.testing import FakeAsterisk  # noqa: E402

PORTS = {"ours": 4591, "panoramisk": 4592}
BENCH_FILE = PROJECT / "asterisk" / "extensions_bench.conf"
INCLUDE_LINE = "#tryinclude extensions_bench.conf"
OPT = "/opt/bench-agi"
HOST = "127.0.0.1"


# ---------------------------------------------------------------------------------------------
# servers (run in their own process so their CPU is measured alone and the driver does not compete)


async def bench_handler(channel: AGIChannel) -> None:
    await channel.answer()
    await channel.set_variable("BENCH_VAR", "ok")
    await channel.verbose("bench", 1)
    await channel.hangup()


async def hold_handler(channel: AGIChannel) -> None:
    """A caller who keeps listening to prompts until the emulator hangs up."""
    while True:
        await channel.stream_file("hotline/welcome", "0123456789")


VERIFY_RESULTS: dict[str, object] = {}


async def verify_handler(channel: AGIChannel) -> None:
    """Exercises the protocol against real Asterisk; results go out as channel variables + UserEvent."""
    req = channel.request
    checks: dict[str, object] = {}
    checks["script"] = req.script
    checks["query"] = req.query
    checks["args"] = list(req.args)
    checks["header_keys"] = sorted(req.env)
    await channel.answer()
    tricky = 'say "hi" \\ back,slash (x) 中文'
    await channel.set_variable("QUOTED", tricky)
    checks["quoted_roundtrip"] = (await channel.get_variable("QUOTED")) == tricky
    checks["empty_roundtrip"] = await _set_get(channel, "EMPTYVAR", "")
    checks["unset_is_none"] = (await channel.get_variable("NO_SUCH_VAR_X")) is None
    checks["language"] = await channel.get_variable("CHANNEL(language)")
    try:
        await channel.command("NO SUCH COMMAND")
        checks["510"] = "no error"
    except AGIError as exc:
        checks["510"] = exc.response.code if exc.response else None
    try:
        await channel.command("GET DATA")
        checks["520"] = "no error"
    except AGIError as exc:
        checks["520_usage_lines"] = len((exc.usage or "").splitlines())
        checks["520"] = exc.response.code if exc.response else None
    try:
        await channel.stream_file("no-such-prompt-anywhere")
        checks["missing_prompt"] = "no error"
    except AGIHangup:
        checks["missing_prompt"] = "AGIHangup (wrong)"
    except AGIError:
        checks["missing_prompt"] = "AGIError"
    checks["exec_result"] = await channel.exec("Set", "EXECVAR=a b")
    checks["exec_set_ok"] = (await channel.get_variable("EXECVAR")) == "a b"
    await channel.user_event("BenchVerify", Commas="a,b,(c)", Quote='x"y', Id=await channel.get_variable("BENCH_ID"))
    checks["say_number"] = await channel.say_number(15)
    VERIFY_RESULTS[req.unique_id] = checks
    print("VERIFY", repr(checks), flush=True)


async def _set_get(channel: AGIChannel, name: str, value: str) -> bool:
    await channel.set_variable(name, value)
    return (await channel.get_variable(name)) in (value, None)  # "" may read back as unset


async def crash_handler(channel: AGIChannel) -> None:
    await channel.answer()
    raise RuntimeError("deliberate crash for the live check")


async def hangup_mid_prompt_handler(channel: AGIChannel) -> None:
    """The originating leg stops after ~1 s; a 10 s prompt must end in AGIHangup, not AGIError."""
    await channel.answer()
    t0 = time.monotonic()
    try:
        await channel.stream_file("silence/10")
        outcome = "no hangup seen"
    except AGIHangup:
        outcome = "AGIHangup"
    except AGIError as exc:
        outcome = f"AGIError {exc}"
    print("VERIFY-HANGUP", outcome, f"{time.monotonic() - t0:.2f}s", flush=True)


def serve(impl: str, port: int, loop: str = "asyncio") -> None:
    profile_to = os.environ.get("AGI_BENCH_PROFILE")  # write cProfile stats of the server there
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            _serve(impl, port, loop)
        finally:
            profiler.disable()
            profiler.dump_stats(f"{profile_to}.{impl}.{loop}")
    else:
        _serve(impl, port, loop)


def _serve(impl: str, port: int, loop: str) -> None:
    from callcenter import eventloop

    _raise_nofile()
    if impl == "ours":
        routes = {
            "bench": bench_handler,
            "hold": hold_handler,
            "verify": verify_handler,
            "crash": crash_handler,
            "hangupmid": hangup_mid_prompt_handler,
        }

        async def main() -> None:
            server = FastAGIServer(routes, HOST, port, backlog=2048)
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(server.stop(timeout=2)))
            await server.start()
            print("READY", flush=True)
            await server.serve_forever()
            print("STATS", server.stats.snapshot(), flush=True)

        eventloop.run(main(), loop)
    elif impl == "panoramisk":
        from panoramisk.fast_agi import Application

        async def p_bench(request) -> None:
            await request.send_command("ANSWER")
            await request.send_command("SET VARIABLE BENCH_VAR ok")
            await request.send_command('VERBOSE "bench" 1')
            await request.send_command("HANGUP")

        async def p_hold(request) -> None:
            try:
                while True:
                    result = await request.send_command('STREAM FILE hotline/welcome "0123456789"')
                    if "result" not in result:
                        return
            except ValueError:
                return  # EOF: panoramisk fails to parse the empty line

        async def main() -> None:
            app = Application()
            app.add_route("bench", p_bench)
            app.add_route("hold", p_hold)
            server = await asyncio.start_server(app.handler, HOST, port, backlog=2048)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            print("READY", flush=True)
            await stop.wait()
            server.close()

        eventloop.run(main(), loop)
    else:
        raise SystemExit(f"unknown impl {impl}")


@contextlib.contextmanager
def server_process(impl: str, port: int, loop: str = "asyncio"):
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", impl, str(port), "--loop", loop],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
    )
    try:
        line = proc.stdout.readline()
        if "READY" not in line:
            raise RuntimeError(f"{impl} server did not start: {line!r}")
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        proc.tail = out  # type: ignore[attr-defined]


def cpu_seconds(pid: int, children: bool = False) -> float:
    """CPU time of a process. Without ``children``: the scheduler's own count in nanoseconds, summed
    over its threads (clock ticks of 10 ms are too coarse for a server's ~0.3 ms per call)."""
    if not children:
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime (reaped AGI processes)
    return ticks / os.sysconf("SC_CLK_TCK")


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 8192):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))


# ---------------------------------------------------------------------------------------------
# minimal AMI client (raw asyncio socket): enough to log in, filter events and originate


class MiniAMI:
    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.responses: dict[str, asyncio.Future] = {}
        self.event_waiters: dict[tuple[str, str], asyncio.Future] = {}
        self.events: list[dict[str, str]] = []
        self.keep_events = False
        self.originate_failures = 0
        self._ids = 0
        self._task: asyncio.Task | None = None

    async def connect(self, host: str, port: int, username: str, secret: str) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port, limit=1 << 20)
        banner = await self.reader.readline()
        if not banner.startswith(b"Asterisk Call Manager"):
            raise RuntimeError(f"not AMI: {banner!r}")
        self._task = asyncio.create_task(self._read_loop())
        r = await self.action("Login", Username=username, Secret=secret, Events="call,user")
        if r.get("Response") != "Success":
            raise RuntimeError(f"AMI login failed: {r.get('Message')}")
        # only the two events we need cross the socket (Asterisk filters per session)
        for pattern in ("Event: UserEvent", "Event: OriginateResponse"):
            r = await self.action("Filter", Operation="Add", Filter=pattern)
            if r.get("Response") != "Success":
                raise RuntimeError(f"AMI Filter failed: {r}")

    def _next_id(self) -> str:
        self._ids += 1
        return f"bench-{os.getpid()}-{self._ids}"

    def send(self, action: str, **fields: str) -> str:
        action_id = fields.pop("ActionID", None) or self._next_id()
        lines = [f"Action: {action}", f"ActionID: {action_id}"]
        for key, value in fields.items():
            for v in value if isinstance(value, list) else [value]:
                lines.append(f"{key}: {v}")
        assert self.writer is not None
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    async def action(self, action: str, timeout: float = 10.0, **fields: str) -> dict[str, str]:
        action_id = self._next_id()
        fut = asyncio.get_running_loop().create_future()
        self.responses[action_id] = fut
        self.send(action, ActionID=action_id, **fields)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.responses.pop(action_id, None)

    def expect_event(self, user_event: str, call_id: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.event_waiters[(user_event, call_id)] = fut
        return fut

    async def _read_loop(self) -> None:
        assert self.reader is not None
        while True:
            try:
                raw = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            msg: dict[str, str] = {}
            for line in raw.decode("utf-8", "replace").split("\r\n"):
                key, sep, value = line.partition(": ")
                if sep:
                    msg.setdefault(key, value)
            if "Response" in msg:
                fut = self.responses.get(msg.get("ActionID", ""))
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                continue
            event = msg.get("Event")
            if event == "OriginateResponse" and msg.get("Response") != "Success":
                self.originate_failures += 1  # judged by BenchDone, not by this (see notes)
            if event == "UserEvent":
                if self.keep_events:
                    self.events.append(msg)
                fut = self.event_waiters.pop((msg.get("UserEvent", ""), msg.get("Id", "")), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)

    async def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                await self.action("Logoff", timeout=2)
            self.writer.close()
        if self._task is not None:
            self._task.cancel()


async def ami_login() -> MiniAMI:
    from callcenter.settings import get_settings

    s = get_settings()
    if not s.ami_secret:
        raise SystemExit("no AMI secret (var/secrets.env): run `callcenter asterisk install` first")
    ami = MiniAMI()
    await ami.connect(s.ami_host, s.ami_port, s.ami_username, s.ami_secret)
    return ami


# ---------------------------------------------------------------------------------------------
# Asterisk-side setup (dialplan include, pyst2 files) with guaranteed undo


def asterisk_root() -> Path:
    from callcenter.settings import get_settings

    return get_settings().effective_asterisk_root


def asterisk_cli(command: str) -> str:
    root = asterisk_root()
    out = subprocess.run(
        ["chroot", str(root), "asterisk", "-rx", command], capture_output=True, text=True, timeout=30
    )
    if out.returncode != 0 or out.stdout.startswith("Unable to connect"):
        raise SystemExit(f"Asterisk not reachable ({command!r}): {out.stdout.strip() or out.stderr.strip()}")
    return out.stdout


def asterisk_calls_processed() -> int | None:
    """Asterisk's count of calls processed since start (one per benchmark call): a run's calls
    beyond its own were someone else's, and their CPU counts in "Asterisk CPU"."""
    for line in asterisk_cli("core show channels count").splitlines():
        if line.strip().endswith("calls processed"):
            return int(line.split()[0])
    return None


def asterisk_pid() -> int:
    from callcenter.pbx.process import running_pids
    from callcenter.settings import get_settings

    pids = running_pids(get_settings())
    if len(pids) != 1:
        raise SystemExit(f"expected one running Asterisk, found {pids}")
    return pids[0]


def _asterisk_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == "asterisk":
            return int(parts[2]), int(parts[3])
    raise SystemExit("no asterisk user in the root")


@contextlib.contextmanager
def bench_dialplan():
    root = asterisk_root()
    etc = root / "etc/asterisk"
    uid, gid = _asterisk_ids(root)
    target = etc / "extensions_bench.conf"
    content = BENCH_FILE.read_bytes()
    if not target.exists() or target.read_bytes() != content:
        target.write_bytes(content)  # what `callcenter asterisk install` renders from asterisk/*.conf
        os.chown(target, uid, gid)
        os.chmod(target, 0o640)
    ext = etc / "extensions.conf"
    original = ext.read_text()
    added = not any(line.strip() in (INCLUDE_LINE, "#include extensions_bench.conf") for line in original.splitlines())
    if added:
        ext.write_text(original.rstrip("\n") + "\n" + INCLUDE_LINE + "   ; temporary, benchmarks/agi_throughput.py\n")
    try:
        asterisk_cli("dialplan reload")
        shown = asterisk_cli("dialplan show bench-agi-ours")
        if "bench-agi-ours" not in shown or "AGI(" not in shown:
            raise SystemExit(f"bench dialplan not loaded:\n{shown}")
        yield
    finally:
        if added:
            current = ext.read_text()
            ext.write_text("".join(l for l in current.splitlines(True) if not l.startswith(INCLUDE_LINE)))
            asterisk_cli("dialplan reload")


PYST2_SCRIPT = """\
import os
from asterisk.agi import AGI
agi = AGI(stderr=open(os.devnull, "w"))  # pyst2 prints ~54 debug lines per call otherwise
try:
    agi.answer()
    agi.set_variable("BENCH_VAR", "ok")
    agi.verbose("bench", 1)
    agi.hangup()
except Exception:
    pass
"""

PYST2_WRAPPER = f"""#!/bin/sh
# the pyenv interpreter finds libpython through an absolute RUNPATH under /root (0700 in the root)
LD_LIBRARY_PATH={OPT}/python/lib PYTHONPATH={OPT}/lib exec {OPT}/python/bin/python3.11 {OPT}/pyst2_agi.py
"""


@contextlib.contextmanager
def pyst2_files():
    root = asterisk_root()
    base = root / OPT.lstrip("/")
    python_home = Path(os.path.realpath(sys.executable)).parent.parent  # /root/.pyenv/versions/3.11.7
    venv_site = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    mounted = False
    try:
        (base / "python").mkdir(parents=True, exist_ok=True)
        (base / "lib").mkdir(exist_ok=True)
        shutil.copytree(venv_site / "asterisk", base / "lib" / "asterisk", dirs_exist_ok=True)
        shutil.copy2(venv_site / "six.py", base / "lib" / "six.py")
        (base / "pyst2_agi.py").write_text(PYST2_SCRIPT)
        wrapper = base / "pyst2_agi.sh"
        wrapper.write_text(PYST2_WRAPPER)
        wrapper.chmod(0o755)
        for path in [base, *base.rglob("*")]:
            if not path.is_symlink() and path != base / "python":
                path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        subprocess.run(["mount", "--bind", str(python_home), str(base / "python")], check=True)
        mounted = True
        subprocess.run(["mount", "-o", "remount,bind,ro", str(base / "python")], check=True)
        yield
    finally:
        if mounted:
            subprocess.run(["umount", str(base / "python")], check=False)
        if base.exists() and not os.path.ismount(base / "python"):
            shutil.rmtree(base)


# ---------------------------------------------------------------------------------------------
# throughput through Asterisk


@dataclass
class RunResult:
    impl: str  # "ours", "panoramisk", "pyst2"; with " (uvloop)" when its server ran on uvloop
    calls: int
    completed: int
    elapsed: float
    session_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    var_ok: int = 0
    server_cpu_ms: float | None = None
    asterisk_cpu_ms: float = 0.0
    lost: int = 0
    foreign: int | None = None  # calls through Asterisk during the run that were not this run's
    started: float = 0.0  # perf_counter at the first Originate
    done_at: list[float] = field(default_factory=list)  # perf_counter at each completion

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0

    def line(self) -> str:
        cpu = f", server CPU {self.server_cpu_ms:.2f} ms/call" if self.server_cpu_ms is not None else ""
        return (
            f"{self.impl:<11} N={self.calls:<5} {self.rate:7.1f} calls/s  session median "
            f"{statistics.median(self.session_ms):6.1f} ms (p90 {_pct(self.session_ms, 90):.1f})  "
            f"originate->done median {statistics.median(self.wall_ms):6.1f} ms  "
            f"Asterisk CPU {self.asterisk_cpu_ms:.2f} ms/call{cpu}  lost {self.lost}  "
            f"{'' if self.foreign is None else f'other calls in Asterisk {self.foreign}  '}"
            f"statuses {self.statuses}  BENCH_VAR ok {self.var_ok}/{self.completed}"
        )


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def run_calls(ami: MiniAMI, impl: str, n: int, inflight: int, tag: str,
                    server_pid: int | None, ast_pid: int, timeout: float = 15.0, label: str | None = None) -> RunResult:
    sem = asyncio.Semaphore(inflight)
    result = RunResult(label or impl, n, 0, 0.0)
    processed0 = asterisk_calls_processed() if server_pid else None  # (measured runs only)
    server_cpu0 = cpu_seconds(server_pid) if server_pid else None
    ast_cpu0 = cpu_seconds(ast_pid, children=True)

    async def one(i: int) -> None:
        call_id = f"{tag}-{i}"
        async with sem:
            fut = ami.expect_event("BenchDone", call_id)
            t = time.perf_counter()
            ami.send(
                "Originate",
                Channel=f"Local/s@bench-agi-{impl}",
                Application="Playback",
                Data="silence/1",
                Async="true",
                Variable=f"__BENCH_ID={call_id}",
            )
            try:
                ev = await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                ami.event_waiters.pop(("BenchDone", call_id), None)
                result.lost += 1
                return
            done = time.perf_counter()
            result.wall_ms.append((done - t) * 1000)
            result.done_at.append(done)
            result.completed += 1
            with contextlib.suppress(ValueError):
                result.session_ms.append((float(ev["T1"]) - float(ev["T0"])) * 1000)
            status = ev.get("AgiStatus", "")
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.var_ok += ev.get("Var") == "ok"

    t0 = result.started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    result.elapsed = time.perf_counter() - t0
    if server_pid and server_cpu0 is not None:
        result.server_cpu_ms = (cpu_seconds(server_pid) - server_cpu0) * 1000 / max(result.completed, 1)
    await asyncio.sleep(0.3)  # let Asterisk reap the last AGI children before reading their CPU
    result.asterisk_cpu_ms = (cpu_seconds(ast_pid, children=True) - ast_cpu0) * 1000 / max(result.completed, 1)
    if processed0 is not None:
        processed1 = asterisk_calls_processed()
        if processed1 is not None:
            result.foreign = processed1 - processed0 - n
    return result


def _same_window(rs: list[RunResult]) -> None:
    """Runs made at the same time: each one's rate becomes its completions from the later start to
    the earlier end, over that window (the one that finishes last then ran alone for a while). The
    Asterisk CPU of the window is shared: each gets the total per call of both; other calls through
    Asterisk cannot be told from the other run's, so that count is dropped."""
    start = max(r.started for r in rs)
    end = min(r.started + r.elapsed for r in rs)
    total_calls = sum(r.completed for r in rs)
    ast_total = sum(r.asterisk_cpu_ms * r.completed for r in rs) / len(rs)  # each measured the same window
    for r in rs:
        r.completed = sum(1 for t in r.done_at if start <= t <= end)
        r.elapsed = end - start
        r.asterisk_cpu_ms = ast_total / max(total_calls, 1)
        r.foreign = None


def _label(impl: str, loop: str) -> str:
    return impl if loop == "asyncio" or impl == "pyst2" else f"{impl} ({loop})"


async def throughput(args) -> list[RunResult]:
    """Rounds of N calls per implementation. With several event loops (`--loop asyncio,uvloop`) every
    round runs each loop's pair of servers in turn (started for that round, warmed up, stopped), so
    drift in the machine's load spreads over all of them; the orders alternate every round."""
    impls = args.impl.split(",")
    loops = args.loop.split(",")
    servers = [i for i in impls if i in PORTS]
    results: list[RunResult] = []
    ast_pid = asterisk_pid()
    with contextlib.ExitStack() as stack:
        if "pyst2" in impls:
            stack.enter_context(pyst2_files())
        ami = await ami_login()
        try:
            for rnd in range(1, args.rounds + 1):
                for loop in loops if rnd % 2 else list(reversed(loops)):
                    with contextlib.ExitStack() as running:
                        procs = {impl: running.enter_context(server_process(impl, PORTS[impl], loop)) for impl in servers}
                        for impl in servers:  # warm-up: first calls pay for caches, ARP, etc.
                            await run_calls(ami, impl, min(50, args.calls), args.inflight, f"warm{rnd}-{loop}-{impl}",
                                            None, ast_pid)
                        if args.together:
                            # both servers' calls at once, each with its own `inflight`: the same machine
                            # load for both; each rate over the window in which both were running
                            rs = await asyncio.gather(*(
                                run_calls(ami, impl, args.calls, args.inflight, f"r{rnd}-{loop}-{impl}", procs[impl].pid,
                                          ast_pid, label=_label(impl, loop)) for impl in servers))
                            _same_window(rs)
                            for r in rs:
                                results.append(r)
                                print(f"round {rnd} (together): {r.line()}", flush=True)
                            continue
                        # alternate the order so drift in machine load does not favour one implementation
                        for impl in servers if rnd % 2 else list(reversed(servers)):
                            r = await run_calls(ami, impl, args.calls, args.inflight, f"r{rnd}-{loop}-{impl}",
                                                procs[impl].pid, ast_pid, label=_label(impl, loop))
                            results.append(r)
                            print(f"round {rnd}: {r.line()}", flush=True)
                if "pyst2" in impls and rnd <= args.pyst2_rounds:
                    if rnd == 1:
                        await run_calls(ami, "pyst2", min(20, args.pyst2_calls), args.inflight, "warm-pyst2", None, ast_pid)
                    r = await run_calls(ami, "pyst2", args.pyst2_calls, args.inflight, f"r{rnd}-pyst2", None, ast_pid)
                    results.append(r)
                    print(f"round {rnd}: {r.line()}", flush=True)
            if ami.originate_failures:
                print(f"(OriginateResponse Failure events: {ami.originate_failures}; calls judged by BenchDone)")
        finally:
            await ami.close()
    return results


def summarize_throughput(results: list[RunResult]) -> str:
    out = ["| AGI implementation | calls/s (median of runs) | runs | session median (ms) | originate→done median (ms) | Asterisk CPU/call (ms) | server CPU/call (ms) | lost |",
           "|---|---|---|---|---|---|---|---|"]
    for impl in dict.fromkeys(r.impl for r in results):
        rs = [r for r in results if r.impl == impl]
        rates = [r.rate for r in rs]
        sess = statistics.median(statistics.median(r.session_ms) for r in rs)
        wall = statistics.median(statistics.median(r.wall_ms) for r in rs)
        ast = statistics.median(r.asterisk_cpu_ms for r in rs)
        srv = [r.server_cpu_ms for r in rs if r.server_cpu_ms is not None]
        out.append(
            f"| {impl} | {statistics.median(rates):.0f} | {', '.join(f'{x:.0f}' for x in rates)} (N={rs[0].calls}) | "
            f"{sess:.1f} | {wall:.1f} | {ast:.2f} | {statistics.median(srv):.2f} | {sum(r.lost for r in rs)} |"
            if srv else
            f"| {impl} | {statistics.median(rates):.0f} | {', '.join(f'{x:.0f}' for x in rates)} (N={rs[0].calls}) | "
            f"{sess:.1f} | {wall:.1f} | {ast:.2f} | (in Asterisk's children) | {sum(r.lost for r in rs)} |"
        )
    counted = [r for r in results if r.foreign is not None]
    if counted:
        busy = [r for r in counted if r.foreign]
        out.append("")
        out.append(f"Other calls through Asterisk during the measured runs: {sum(r.foreign for r in counted)} "
                   f"({len(busy)} of {len(counted)} runs had any).")
    labels = list(dict.fromkeys(r.impl for r in results))
    pairs = [(a, b) for a in labels if a.startswith("ours") for b in labels if b.startswith("panoramisk")]
    for a, b in pairs:
        ours = [r.rate for r in results if r.impl == a]
        pano = [r.rate for r in results if r.impl == b]
        if ours and len(ours) == len(pano):
            ratios = [x / y for x, y in zip(ours, pano)]
            out.append("")
            out.append(f"Per-round ratio {a} / {b}: {', '.join(f'{x:.2f}' for x in ratios)} "
                       f"(median {statistics.median(ratios):.2f}).")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# 10 vs 1,000 open sessions, protocol level


async def hold_sessions(port: int, count: int, warmup: float, duration: float, seed: int = 1) -> dict:
    rng = random.Random(seed)
    samples: list[float] = []
    measuring = False
    stop = asyncio.Event()
    connected = 0
    all_connected = asyncio.Event()

    async def one(i: int) -> None:
        nonlocal connected
        fake = FakeAsterisk(HOST, port, "hold", uniqueid=f"1732512345.{i}")
        await fake.connect()
        connected += 1
        if connected == count:
            all_connected.set()
        try:
            sent_at = None
            while not stop.is_set():
                command = await fake.read_command(timeout=30)
                now = time.perf_counter()
                if command is None:
                    raise RuntimeError("server closed a held session")
                if sent_at is not None and measuring:
                    samples.append((now - sent_at) * 1000)
                # the caller listens to the prompt for 0.5-1.5 s, then Asterisk answers
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                fake.writer.write(b"200 result=0 endpos=8000\n")
                sent_at = time.perf_counter()
        finally:
            await fake.close()

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    await asyncio.wait_for(all_connected.wait(), 60)
    await asyncio.sleep(warmup)
    measuring = True
    await asyncio.sleep(duration)
    measuring = False
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "open": count,
        "commands": len(samples),
        "p50": _pct(samples, 50),
        "p99": _pct(samples, 99),
        "max": max(samples) if samples else float("nan"),
    }


async def sessions(args) -> list[dict]:
    _raise_nofile()
    rows = []
    counts = [int(x) for x in args.open.split(",")]
    for loop, impl, count in itertools.product(args.loop.split(","), args.session_impl.split(","), counts):
        port = 4593 if impl == "ours" else 4594
        with server_process(impl, port, loop) as proc:
            cpu0 = cpu_seconds(proc.pid)
            t0 = time.perf_counter()
            row = await hold_sessions(port, count, args.warmup, args.duration)
            row["server_cpu_pct"] = (cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - t0) * 100
        row["impl"] = impl = _label(impl, loop)
        rows.append(row)
        print(
            f"{impl:<22} {count:>5} open: {row['commands']:>6} commands, turnaround p50 {row['p50']:.3f} ms, "
            f"p99 {row['p99']:.3f} ms, max {row['max']:.2f} ms, server CPU {row['server_cpu_pct']:.1f} %",
            flush=True,
        )
    return rows


def summarize_sessions(rows: list[dict]) -> str:
    out = ["| server | open sessions | commands measured | turnaround p50 (ms) | p99 (ms) | max (ms) | server CPU |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['impl']} | {r['open']} | {r['commands']} | {r['p50']:.3f} | {r['p99']:.3f} | {r['max']:.2f} | {r['server_cpu_pct']:.1f} % |"
        )
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# the bench script against an emulated Asterisk (server CPU per call)


async def emulated_call(port: int, header_lines: list[bytes]) -> bool:
    """One call as res_agi makes it: header one line per write, one answer per command, after the
    hangup's answer a HANGUP line, then wait for the server to close. True if the script ran."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for line in header_lines:
            writer.write(line)
        commands = 0
        while True:
            line = await reader.readline()
            if not line:
                return commands == 4
            commands += 1
            if line.startswith(b"HANGUP"):
                writer.write(b"200 result=1\nHANGUP\n")
            elif line.startswith(b"ANSWER"):
                writer.write(b"200 result=0\n")
            else:
                writer.write(b"200 result=1\n")
    except ConnectionError:
        return False
    finally:
        writer.close()


async def emulated(args) -> list[dict]:
    from agi.testing import make_header

    header = make_header("bench", uniqueid="1732512345.1")
    header_lines = [line + b"\n" for line in header.split(b"\n")[:-1]]  # ends with the blank line
    impls = [i for i in args.impl.split(",") if i in PORTS]
    rows = []
    for rnd in range(1, args.rounds + 1):
        for loop in args.loop.split(",") if rnd % 2 else list(reversed(args.loop.split(","))):
            for impl in impls if rnd % 2 else list(reversed(impls)):
                port = 4595 if impl == "ours" else 4596
                with server_process(impl, port, loop) as proc:
                    sem = asyncio.Semaphore(args.inflight)

                    async def one() -> bool:
                        async with sem:
                            return await emulated_call(port, header_lines)

                    await asyncio.gather(*(one() for _ in range(min(200, args.calls))))  # warm-up
                    cpu0 = cpu_seconds(proc.pid)
                    t0 = time.perf_counter()
                    ok = sum(await asyncio.gather(*(one() for _ in range(args.calls))))
                    elapsed = time.perf_counter() - t0
                    cpu_ms = (cpu_seconds(proc.pid) - cpu0) * 1000 / args.calls
                row = {"round": rnd, "impl": _label(impl, loop), "calls": args.calls, "ok": ok,
                       "rate": args.calls / elapsed, "server_cpu_ms": cpu_ms}
                rows.append(row)
                print(f"round {rnd}: {row['impl']:<20} {ok}/{args.calls} calls ran the script, "
                      f"{row['rate']:.0f} calls/s, server CPU {cpu_ms:.3f} ms/call", flush=True)
    return rows


def summarize_emulated(rows: list[dict]) -> str:
    out = ["| server | rounds | server CPU/call, median (range) | calls/s, median |", "|---|---|---|---|"]
    for impl in dict.fromkeys(r["impl"] for r in rows):
        cpu = [r["server_cpu_ms"] for r in rows if r["impl"] == impl]
        rate = [r["rate"] for r in rows if r["impl"] == impl]
        out.append(f"| {impl} | {len(cpu)} | {statistics.median(cpu):.3f} ms ({min(cpu):.3f}–{max(cpu):.3f}) | "
                   f"{statistics.median(rate):.0f} |")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# live protocol check


async def verify(args) -> bool:
    ok = True
    for loop in args.loop.split(","):
        print(f"-- our server on the {loop} event loop")
        ok &= await verify_on(loop)
    return ok


async def verify_on(loop: str) -> bool:
    ok = True
    with server_process("ours", PORTS["ours"], loop) as proc:
        ami = await ami_login()
        ami.keep_events = True
        try:
            cases = {"verify": "verify", "unknown": "no-such-route", "crash": "crash", "hangup": "hangupmid"}
            done = {}
            for name, exten in cases.items():
                call_id = f"verify-{name}-{os.getpid()}"
                fut = ami.expect_event("BenchVerifyDone", call_id)
                ami.send(
                    "Originate",
                    Channel=f"Local/{exten}@bench-agi-verify",
                    Application="Playback",
                    Data="silence/1",
                    Async="true",
                    Variable=f"__BENCH_ID={call_id}",
                )
                done[name] = await asyncio.wait_for(fut, 20)
            await asyncio.sleep(0.2)
            user_events = [e for e in ami.events if e.get("UserEvent") == "BenchVerify"]
        finally:
            await ami.close()
    out = proc.tail  # type: ignore[attr-defined]
    print(out.strip())
    for name, ev in done.items():
        print(f"{name}: AgiStatus={ev.get('AgiStatus')} IVR_NEXT={ev.get('Next')!r} AGI_ERROR={ev.get('Err')!r}")
    expect = {
        "unknown": ("queue", "UnknownScript"),
        "crash": ("queue", "RuntimeError"),
        "verify": ("", ""),
    }
    for name, (nxt, err) in expect.items():
        if (done[name].get("Next", ""), done[name].get("Err", "")) != (nxt, err):
            print(f"FAIL {name}: expected IVR_NEXT={nxt!r} AGI_ERROR={err!r}")
            ok = False
    if user_events:
        ev = user_events[0]
        print(f"UserEvent fields: Commas={ev.get('Commas')!r} Quote={ev.get('Quote')!r}")
        ok &= ev.get("Commas") == "a,b,(c)" and ev.get("Quote") == 'x"y'
    else:
        print("FAIL: no BenchVerify UserEvent")
        ok = False
    ok &= "VERIFY-HANGUP AGIHangup" in out
    checks_line = next((line for line in out.splitlines() if line.startswith("VERIFY {")), "")
    ok &= all(s in checks_line for s in ("'quoted_roundtrip': True", "'510': 510", "'520': 520",
                                        "'missing_prompt': 'AGIError'", "'exec_set_ok': True",
                                        "'script': 'verify'", "'args': ['arg one', '', 'x']"))
    print("VERIFY", "PASSED" if ok else "FAILED")
    return ok


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    p_serve = sub.add_parser("serve", help="internal: run one server")
    p_serve.add_argument("impl")
    p_serve.add_argument("port", type=int)
    p_serve.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop"))
    for name in ("asterisk", "sessions", "emulated", "verify", "all"):
        p = sub.add_parser(name)
        p.add_argument("--calls", type=int, default=1000)
        p.add_argument("--pyst2-calls", type=int, default=200)
        p.add_argument("--pyst2-rounds", type=int, default=1)
        p.add_argument("--rounds", type=int, default=3)
        p.add_argument("--inflight", type=int, default=20)
        p.add_argument("--impl", default="ours,panoramisk,pyst2")
        p.add_argument("--loop", default="asyncio,uvloop",
                       help="event loops of the two FastAGI servers, each run against the other on the same loop")
        p.add_argument("--open", default="10,1000")
        p.add_argument("--session-impl", default="ours,panoramisk")
        p.add_argument("--warmup", type=float, default=3.0)
        p.add_argument("--duration", type=float, default=15.0)
        p.add_argument("--together", action="store_true",
                       help="asterisk mode: run the two FastAGI servers' calls at the same time each round "
                            "(same machine load for both) instead of one after the other")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.impl, args.port, args.loop)
        return
    asterisk_results: list[RunResult] = []
    session_rows: list[dict] = []
    emulated_rows: list[dict] = []
    verified = None

    async def run() -> None:
        nonlocal asterisk_results, session_rows, emulated_rows, verified
        if args.mode in ("verify", "all"):
            with bench_dialplan():
                verified = await verify(args)
        if args.mode in ("asterisk", "all"):
            with bench_dialplan():
                asterisk_results = await throughput(args)
        if args.mode in ("sessions", "all"):
            session_rows = await sessions(args)
        if args.mode == "emulated":
            emulated_rows = await emulated(args)

    asyncio.run(run())
    print()
    if asterisk_results:
        print(summarize_throughput(asterisk_results))
        print()
    if session_rows:
        print(summarize_sessions(session_rows))
    if emulated_rows:
        print(summarize_emulated(emulated_rows))
    if verified is False:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
