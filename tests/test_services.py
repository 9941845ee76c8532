"""`callcenter service install / status`: the systemd units, checked by systemd's own verifier and
run the way systemd would run them, without systemd (CI and this machine have none as PID 1).

What the supervisor run covers: the hotline unit's ExecStart, Environment, EnvironmentFile and
WorkingDirectory start a hotline that answers on its API; after a SIGKILL the unit's Restart= policy
(read from the unit, applied by the table in systemd.service(5)) restarts it and it answers again on
the same store; a SIGTERM (what `systemctl stop` sends) ends it cleanly and is not restarted.
What it does not cover: User=/Group= and the sandboxing options (NoNewPrivileges, ProtectSystem,
ReadWritePaths, ...), which only systemd applies, and the Asterisk unit's ExecStart (it would start
a second Asterisk beside the shared one): that unit is checked by `systemd-analyze verify` only."""
from __future__ import annotations

import os
import pwd
import queue
import shlex
import signal
import socket
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from callcenter.ops import services
from callcenter.settings import Settings

from .conftest import CONFIG_DIR

ASTERISK_UID, ASTERISK_GID = 64100, 64101
START_TIMEOUT = 120.0  # a fresh store is migrated first; generous for a loaded 2-core CI machine


def _fake_asterisk_install(state: Path, mode: str = "chroot") -> None:
    """What `callcenter asterisk install` leaves that the units need: the root's asterisk binary and
    user, and the install mode."""
    root = state / "asterisk-root"
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/asterisk").write_text("#!/bin/sh\n")
    (root / "usr/sbin/asterisk").chmod(0o755)
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                     f"asterisk:x:{ASTERISK_UID}:{ASTERISK_GID}::/var/lib/asterisk:/usr/sbin/nologin\n")
    (root / "run").mkdir()
    (root / "var").mkdir()
    (root / "var/run").symlink_to("/run")  # as in Debian: the unit must name the root's /run
    (state / "asterisk-install.json").write_text(f'{{"mode": "{mode}", "root": "{root}"}}\n')


@pytest.fixture
def settings(tmp_path) -> Settings:
    state = tmp_path / "state"
    state.mkdir()
    _fake_asterisk_install(state)
    return Settings(state_dir=state, config_dir=CONFIG_DIR, database_url="")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as systemd reads it: sections of keys, each with its values in order (a key may
    repeat, e.g. Environment=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _installed(settings: Settings, tmp_path: Path, user: str = "callcenter") -> dict[str, dict]:
    report = services.install_units(settings, user=user, prefix=tmp_path / "prefix")
    return {p.name: parse_unit(p.read_text()) for p in report.written}


# ---- the unit files ---------------------------------------------------------------------------

def test_rendered_units_pass_systemd_analyze_verify(settings, tmp_path):
    """systemd's verifier accepts every unit as written: no unknown key, no bad value, and every
    ExecStart/ExecStartPre program exists."""
    report = services.install_units(settings, prefix=tmp_path / "prefix")
    assert [p.name for p in report.written] == [services.ASTERISK_UNIT, services.HOTLINE_UNIT,
                                                services.WATCHDOG_UNIT]
    assert all(p.parent == tmp_path / "prefix/etc/systemd/system" for p in report.written)
    result = subprocess.run(["/usr/bin/systemd-analyze", "verify", *map(str, report.written)],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_install_also_rotates_the_hotline_and_asterisk_logs(settings, tmp_path):
    """The system's logrotate gets this install's paths with the units (issue 19: log rotation)."""
    from callcenter import logrotate

    report = services.install_units(settings, prefix=tmp_path / "prefix")
    rotate = tmp_path / "prefix" / services.LOGROTATE_FILE
    assert rotate.read_text(encoding="utf-8") == logrotate.render(settings)
    assert "asterisk" in rotate.read_text(encoding="utf-8")
    assert f"wrote {rotate}" in report.steps


def test_the_hotline_runs_unprivileged_after_postgresql_network_and_asterisk(settings, tmp_path):
    units = _installed(settings, tmp_path)
    hotline = units[services.HOTLINE_UNIT]
    service = hotline["Service"]
    assert service["User"] == ["callcenter"]
    assert service["Restart"] == ["on-failure"]
    assert service["NoNewPrivileges"] == ["yes"] and service["ProtectSystem"] == ["strict"]
    assert service["CapabilityBoundingSet"] == [""]  # no capability at all
    state = str(settings.state_dir.absolute())
    assert state in service["ReadWritePaths"][0].split()
    assert f"CALLCENTER_STATE_DIR={state}" in service["Environment"]
    assert service["EnvironmentFile"] == [f"-{state}/secrets.env"]
    # it may read the recordings Asterisk writes (its group), nothing more of Asterisk's
    assert service["SupplementaryGroups"] == [str(ASTERISK_GID)]
    argv = shlex.split(service["ExecStart"][0])
    assert Path(argv[0]).is_absolute() and argv[1:] == ["run", "--no-asterisk"]
    for key in ("After", "Wants"):
        assert set(hotline["Unit"][key][0].split()) == {"network-online.target", "postgresql.service",
                                                         services.ASTERISK_UNIT}
    assert hotline["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_watchdog_runs_beside_the_hotline_as_its_user_and_only_reads_the_state(settings, tmp_path):
    """Issue 16 item 2: the watchdog is its own process (what freezes the hotline does not freeze it),
    the hotline's user (it may kill a frozen hotline, which systemd restarts), always restarted."""
    units = _installed(settings, tmp_path)
    service = units[services.WATCHDOG_UNIT]["Service"]
    hotline = units[services.HOTLINE_UNIT]["Service"]
    assert service["User"] == hotline["User"] and service["Restart"] == ["always"]
    assert shlex.split(service["ExecStart"][0])[1:] == ["agi", "watchdog"]
    assert service["ReadOnlyPaths"] == [str(settings.state_dir.absolute())] and "ReadWritePaths" not in service
    assert service["CapabilityBoundingSet"] == [""]


def test_asterisk_enters_its_root_as_root_and_runs_as_its_own_user(settings, tmp_path):
    service = _installed(settings, tmp_path)[services.ASTERISK_UNIT]["Service"]
    root = str(settings.state_dir.absolute() / "asterisk-root")
    assert "User" not in service  # chroot needs CAP_SYS_CHROOT: the README says why
    assert shlex.split(service["ExecStart"][0]) == ["/usr/sbin/chroot", root, "/usr/sbin/asterisk", "-f",
                                                    "-U", "asterisk", "-G", "asterisk"]
    # the control socket's directory is the root's /run (Debian's /var/run links there), not the host's
    assert shlex.split(service["ExecStartPre"][0])[-1] == f"{root}/run/asterisk"
    assert service["ReadWritePaths"] == [root] and service["Restart"] == ["on-failure"]


def test_a_host_install_uses_the_distribution_asterisk_unit(settings, tmp_path):
    (settings.state_dir / "asterisk-install.json").write_text('{"mode": "host", "root": "/"}\n')
    # host mode: Asterisk is /usr/sbin/asterisk of this machine; pretend it is installed
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(services, "is_installed", lambda _s: True)
        units = _installed(settings, tmp_path)
    assert list(units) == [services.HOTLINE_UNIT, services.WATCHDOG_UNIT]
    assert "asterisk.service" in units[services.HOTLINE_UNIT]["Unit"]["Wants"][0].split()
    assert services.unit_names(settings) == ["asterisk.service", services.HOTLINE_UNIT, services.WATCHDOG_UNIT]


def test_without_asterisk_installed_install_says_what_to_do_first(tmp_path):
    bare = Settings(state_dir=tmp_path / "bare", config_dir=CONFIG_DIR)
    with pytest.raises(services.ProvisionError, match="callcenter asterisk install"):
        services.render_units(bare)


def test_dry_run_prints_the_units_and_writes_nothing(settings, tmp_path, monkeypatch):
    from callcenter import cli

    monkeypatch.setattr("callcenter.ops.cli.get_settings", lambda: settings)
    result = CliRunner().invoke(cli.main, ["service", "install", "--dry-run", "--prefix", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert f"# --- {services.HOTLINE_UNIT}" in result.output and "Restart=on-failure" in result.output
    assert not (tmp_path / "p").exists()


def test_the_service_user_gets_the_state_files_sip_passwords_stay_root(settings, tmp_path):
    """The audit key and store belong to the user that runs the hotline (README: The audit record);
    the operators' SIP passwords, which it never needs, stay root's."""
    for name in ("callcenter.db", "audit.key", "secrets.env", "sip-secrets.json"):
        (settings.state_dir / name).write_text("x")
    config = tmp_path / "config"
    config.mkdir()
    (config / "policy.yaml").write_text("{}\n")
    nobody = pwd.getpwnam("nobody")
    steps: list[str] = []
    services.hand_over_state(settings.model_copy(update={"config_dir": config}), "nobody", steps)
    owner = {p: (p.stat().st_uid, p.stat().st_gid) for p in
             (settings.state_dir, settings.state_dir / "callcenter.db", settings.state_dir / "audit.key",
              settings.state_dir / "secrets.env", config / "policy.yaml")}
    assert set(owner.values()) == {(nobody.pw_uid, nobody.pw_gid)}
    assert (settings.state_dir / "sip-secrets.json").stat().st_uid == os.geteuid()
    assert (settings.state_dir / "asterisk-root").stat().st_uid == os.geteuid()


def test_a_python_the_service_user_cannot_reach_is_named(settings, tmp_path):
    """A virtualenv made from a Python under /root (pyenv) cannot run as the service user: the
    install says so (and refuses when installing into the real system)."""
    private = tmp_path / "root-only"
    (private / "bin").mkdir(parents=True)
    (private / "bin/python3").write_text("")
    private.chmod(0o700)
    script = tmp_path / "callcenter"
    script.write_text(f"#!{private}/bin/python3\n")
    problems = services.access_problems(settings, script)
    assert any(p.startswith(f"its Python ({private}/bin/python3)") for p in problems), problems


# ---- service status ---------------------------------------------------------------------------

def test_status_without_systemd_says_so_and_fails(settings, monkeypatch):
    from callcenter import cli

    monkeypatch.setattr("callcenter.ops.cli.get_settings", lambda: settings)
    monkeypatch.setattr(services, "systemd_running", lambda: False)
    result = CliRunner().invoke(cli.main, ["service", "status"])
    assert result.exit_code == 1
    assert "systemd is not running on this machine" in result.output
    assert f"{services.HOTLINE_UNIT}: " in result.output and "callcenter run" in result.output


def test_status_line_from_systemctl_show():
    shown = services.parse_show("LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n"
                                "MainPID=4242\nNRestarts=3\nExecMainStartTimestamp=Mon 2026-12-07 08:00:00 CST\n"
                                "Result=success\n")
    assert services.describe("callcenter-hotline.service", shown) == (
        "callcenter-hotline.service: active (running), enabled, pid 4242, "
        "since Mon 2026-12-07 08:00:00 CST, restarted 3x")
    missing = services.parse_show("LoadState=not-found\nActiveState=inactive\nSubState=dead\n")
    assert "not installed" in services.describe("callcenter-hotline.service", missing)


# ---- the hotline unit under a supervisor ------------------------------------------------------

# systemd.service(5), Restart=: which ends restart the service. A clean end is exit 0 or one of the
# signals SIGHUP, SIGINT, SIGTERM, SIGPIPE.
_CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}


def restart_wanted(policy: str, returncode: int) -> bool:
    clean = returncode == 0 or (returncode < 0 and signal.Signals(-returncode) in _CLEAN_SIGNALS)
    return {"no": False, "always": True, "on-failure": not clean}[policy]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Supervisor:
    """Starts a unit's ExecStart the way systemd does (its Environment, EnvironmentFile and
    WorkingDirectory over systemd's own minimal environment, plus a drop-in's Environment)."""

    def __init__(self, unit: dict[str, dict[str, list[str]]], drop_in: dict[str, str]):
        service = unit["Service"]
        self.argv = shlex.split(service["ExecStart"][0])
        self.cwd = service["WorkingDirectory"][0]
        self.restart = service["Restart"][0]
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        for line in service.get("Environment", []):
            env.update(item.split("=", 1) for item in shlex.split(line))
        for name in service.get("EnvironmentFile", []):
            path = Path(name.removeprefix("-"))
            if path.exists() or not name.startswith("-"):
                env.update(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        self.env = {**env, **drop_in}
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue[str] = queue.Queue()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.put(line)
        self.lines.put("")  # EOF: the process ended

    def wait_until_serving(self) -> list[str]:
        seen = []
        while True:
            line = self.lines.get(timeout=START_TIMEOUT)
            seen.append(line)
            assert line, "the hotline ended before serving:\n" + "".join(seen[-30:])
            if "Uvicorn running on" in line:
                return seen

    def end(self, sig: signal.Signals) -> bool:
        """Send `sig`, reap the process; True if the unit's Restart= policy restarts it (and it did)."""
        self.proc.send_signal(sig)
        returncode = self.proc.wait(60)
        while self.lines.get(timeout=60):  # drain until this process's EOF
            pass
        if restart_wanted(self.restart, returncode):
            self.start()
            return True
        return False


def test_the_hotline_unit_restarts_after_sigkill_and_stops_on_sigterm(settings, tmp_path):
    """The unit's own command, environment and working directory serve the API; SIGKILL is a
    failure and Restart=on-failure brings it back on the same store; SIGTERM is a clean stop."""
    unit = _installed(settings, tmp_path)[services.HOTLINE_UNIT]
    api_port = _free_port()
    # as a drop-in (/etc/systemd/system/callcenter-hotline.service.d/*.conf) would: ports free here,
    # an AMI port nobody listens on (the link retries, the API serves regardless)
    supervisor = Supervisor(unit, {"CALLCENTER_API_PORT": str(api_port), "CALLCENTER_AGI_PORT": str(_free_port()),
                                   "CALLCENTER_AMI_PORT": str(_free_port())})
    assert supervisor.env["CALLCENTER_STATE_DIR"] == str(settings.state_dir.absolute())
    supervisor.start()
    try:
        supervisor.wait_until_serving()
        assert httpx.get(f"http://127.0.0.1:{api_port}/openapi.json", timeout=30).status_code == 200
        first_pid = supervisor.proc.pid

        assert supervisor.end(signal.SIGKILL) is True  # restarted by the policy
        supervisor.wait_until_serving()
        assert supervisor.proc.pid != first_pid
        assert httpx.get(f"http://127.0.0.1:{api_port}/openapi.json", timeout=30).status_code == 200
        assert (settings.state_dir / "callcenter.db").exists()  # the same state dir, from the unit

        # a clean stop, not restarted: uvicorn shuts down, then re-raises SIGTERM on itself, which
        # systemd counts as clean (as it does exit 0)
        assert supervisor.end(signal.SIGTERM) is False
        assert supervisor.proc.returncode in (0, -signal.SIGTERM)
    finally:
        if supervisor.proc.poll() is None:
            supervisor.proc.kill()
            supervisor.proc.wait(30)
