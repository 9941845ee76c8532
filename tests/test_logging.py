"""Logs an operator can run the hotline with for years (issue 19 item 3): quiet by default, one line
per call, JSON lines as an option, personal data masked whatever logger wrote it, files that
logrotate may move away. Provisioning's progress lines are in tests/test_pbx_provision.py."""
from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from callcenter import logs
from callcenter.logrotate import render as render_logrotate
from callcenter.settings import Settings
from tests.conftest import CONFIG_DIR
from tests.test_agi_menu_cost import CALLER, answers, call_menu, store  # noqa: F401  (store: the fixture)

PHONE, ID_NUMBER = "13812345678", "320282199001011234"
PHONE_MASKED, ID_MASKED = "138****5678", "320***********1234"


@pytest.fixture
def restore_logging():
    """The root logger and the quieted ones as they were: set-up changes process-wide state."""
    root = logging.getLogger()
    names = (*logs.QUIET_LOGGERS, "uvicorn", "uvicorn.error")
    saved = list(root.handlers), root.level, {n: (logging.getLogger(n).level, logging.getLogger(n).propagate,
                                                  list(logging.getLogger(n).handlers)) for n in names}
    yield
    for h in [h for h in root.handlers if h not in saved[0]]:
        root.removeHandler(h)
        h.close()
    root.setLevel(saved[1])
    for n, (level, propagate, handlers) in saved[2].items():
        logger = logging.getLogger(n)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers


def _settings(tmp_path: Path, **values) -> Settings:
    return Settings(state_dir=tmp_path, config_dir=CONFIG_DIR, **values)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_personal_numbers_are_masked_from_every_logger_in_text_and_json(tmp_path, restore_logging, fmt):
    """R7.6: whatever logger writes a phone or an ID number — ours, uvicorn's, APScheduler's, in the
    message, its arguments, an extra field or a traceback — the log holds it masked."""
    logs.setup(_settings(tmp_path, log_file=Path(f"hotline-{fmt}.log"), log_format=fmt))
    logging.getLogger("agi.hotline").info("caller %s gave ID %s", PHONE, ID_NUMBER, extra={"caller": PHONE})
    logging.getLogger("uvicorn.error").warning(f"bad request from PJSIP/{PHONE}@trunk id={ID_NUMBER}")
    logging.getLogger("apscheduler.executors.default").error("job failed for %s", int(PHONE))
    try:
        raise ValueError(f"no case for {PHONE} / {ID_NUMBER}")
    except ValueError:
        logging.getLogger("callback.service").exception("sweep failed, case 20261125-000123")

    text = (tmp_path / f"hotline-{fmt}.log").read_text(encoding="utf-8")
    assert PHONE not in text and ID_NUMBER not in text
    assert text.count(PHONE_MASKED) == 5 and text.count(ID_MASKED) == 3
    assert "20261125-000123" in text  # a case number is not personal: a log line leads to its case
    if fmt == "json":
        records = [json.loads(line) for line in text.splitlines()]
        assert [r["logger"] for r in records] == ["agi.hotline", "uvicorn.error", "apscheduler.executors.default",
                                                  "callback.service"]
        assert [r["level"] for r in records] == ["INFO", "WARNING", "ERROR", "ERROR"]
        assert records[0]["message"] == f"caller {PHONE_MASKED} gave ID {ID_MASKED}"
        assert records[0]["caller"] == PHONE_MASKED
        assert datetime.fromisoformat(records[0]["time"]).utcoffset() is not None  # ISO 8601 with its zone
        assert "ValueError" in records[3]["exception"]
    else:
        assert f"INFO agi.hotline: caller {PHONE_MASKED} gave ID {ID_MASKED} [caller={PHONE_MASKED}]" in text


def test_quiet_by_default_verbose_and_the_level_setting(tmp_path, restore_logging):
    root = logging.getLogger()
    logs.setup(_settings(tmp_path))
    assert root.level == logging.INFO
    assert all(logging.getLogger(n).level == logging.WARNING for n in ("apscheduler", "uvicorn.access", "httpx"))
    logs.setup(_settings(tmp_path), verbose=True)
    assert root.level == logging.DEBUG and logging.getLogger("apscheduler").level == logging.INFO
    logs.setup(_settings(tmp_path, log_level="warning"))
    assert root.level == logging.WARNING and logging.getLogger("apscheduler").level == logging.WARNING
    assert sum(getattr(h, "_callcenter_handler", False) for h in root.handlers) == 1, "set-up replaces its handler"


def test_cli_sets_up_logging_and_prints_the_logrotate_config(tmp_path, restore_logging, monkeypatch):
    from callcenter import cli, logs_cli

    settings = _settings(tmp_path, log_file=Path("hotline.log"))
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    monkeypatch.setattr(logs_cli, "get_settings", lambda: settings)
    result = CliRunner().invoke(cli.main, ["--verbose", "logs", "logrotate"])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "hotline.log") in result.output and "logger reload" in result.output
    assert logging.getLogger().level == logging.DEBUG
    assert any(isinstance(h, logging.handlers.WatchedFileHandler) for h in logging.getLogger().handlers)


def test_log_file_moved_away_by_logrotate_is_reopened(tmp_path, restore_logging):
    """logrotate renames the file; the next line goes to a new file of the same name, none is lost."""
    logs.setup(_settings(tmp_path, log_file=Path("hotline.log")))
    log = logging.getLogger("callcenter.run")
    log.warning("before rotation")
    os.rename(tmp_path / "hotline.log", tmp_path / "hotline.log.1")
    log.warning("after rotation")
    assert [line.endswith("before rotation") for line in _lines(tmp_path / "hotline.log.1")] == [True]
    assert [line.endswith("after rotation") for line in _lines(tmp_path / "hotline.log")] == [True]


def test_logrotate_config_is_valid_for_the_hotline_and_asterisk_logs(tmp_path):
    """`logrotate -d` (debug: reads the configuration, changes nothing) accepts what we ship and
    rotates the hotline's log, Asterisk's messages.log and its console log, not the CEL file."""
    root = tmp_path / "asterisk root"  # a space: paths are quoted
    (root / "var/log/asterisk").mkdir(parents=True)
    for name in ("messages.log", "callcenter-cel.csv"):
        (root / "var/log/asterisk" / name).write_text("x\n")
    settings = _settings(tmp_path, asterisk_root=root, log_file=Path("hotline.log"))
    for name in ("hotline.log", "asterisk-console.log"):
        (tmp_path / name).write_text("x\n")
    conf = tmp_path / "callcenter.logrotate"
    conf.write_text(render_logrotate(settings))
    conf.chmod(0o644)
    result = subprocess.run([shutil.which("logrotate") or "/usr/sbin/logrotate", "-d", "-f",
                             "-s", str(tmp_path / "logrotate.state"), str(conf)], capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "error" not in out.lower(), out
    for path in (tmp_path / "hotline.log", root / "var/log/asterisk/messages.log", tmp_path / "asterisk-console.log"):
        assert f"considering log {path}" in out, out
    assert "callcenter-cel.csv" not in out
    assert f"chroot '{root}' /usr/sbin/asterisk -rx 'logger reload'" in conf.read_text()
    assert not (tmp_path / "hotline.log.1").exists()  # -d changed nothing
    # without a log file (stderr for journald) only Asterisk's logs are rotated
    assert "hotline.log" not in render_logrotate(_settings(tmp_path, asterisk_root=root))
    # the distribution's package (host mode) rotates its logs itself: logrotate refuses a file named twice
    host = tmp_path / "host-state"
    host.mkdir()
    (host / "asterisk-install.json").write_text('{"mode": "host", "root": "/"}')
    assert "messages.log" not in render_logrotate(_settings(host))


async def test_a2_one_info_line_per_call_with_caller_masked_path_outcome_case_and_duration(store, domain,  # noqa: F811
                                                                                         caplog):
    """A2 (every call on record) as an operator reads it in the log: one INFO line when the call's
    record is finished."""
    caplog.set_level(logging.INFO, logger="agi")
    await call_menu(store, domain, answers(), uniqueid="1732512345.31", args=["1732512345.30"])
    lines = [r for r in caplog.records if r.name == "agi.hotline" and r.levelno == logging.INFO]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    line = lines[0]
    message = line.getMessage()
    assert CALLER not in message and f"from {CALLER[:3]}****{CALLER[-4:]}" in message
    assert "(1732512345.31)" in message and "queued (consultation) via greeting>open_cases>" in message
    assert f"case {line.case_number}" in message and line.case_number.count("-") == 1
    assert message.endswith(" s") and line.duration_s >= 0
    assert (line.outcome, line.reason, line.path[:2]) == ("queued", "consultation", ["greeting", "open_cases"])
    assert line.call_id is not None and line.caller == f"{CALLER[:3]}****{CALLER[-4:]}"


async def test_scheduler_ticks_that_find_nothing_to_do_log_nothing_at_info(seeded, domain, engine, tmp_path,
                                                                           restore_logging):
    """Quiet by default: the callback, deadline and retention jobs run several times with nothing
    due; the log says the scheduler became active, and nothing per tick."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED

    from callcenter.ami.client import AMIClient
    from callcenter.callbacks import AmiCallbackPbx, callback_service

    settings = _settings(tmp_path, log_file=Path("hotline.log"))
    logs.setup(settings)
    pbx = AmiCallbackPbx(AMIClient("127.0.0.1", 9, "nobody", "x"))  # never started: nothing to dial
    service = callback_service(settings, domain=domain, engine=engine, pbx=pbx, poll_seconds=0.05,
                               sweep_seconds=0.5, deadline_seconds=0.5, holder="quiet")
    runs: dict[str, int] = {}
    errors: list = []
    ticked = asyncio.Event()

    def counted(event) -> None:
        if event.code == EVENT_JOB_ERROR:
            errors.append(event.exception)
        runs[event.job_id] = runs.get(event.job_id, 0) + 1
        if runs.get("callback-sweep", 0) >= 3 and runs.get("deadline-sweep", 0) >= 3:
            ticked.set()

    await service.start()
    try:
        async with asyncio.timeout(20):
            while service.scheduler is None:
                await asyncio.sleep(0.01)
            service.scheduler.add_listener(counted, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
            await ticked.wait()
            lines = _lines(tmp_path / "hotline.log")
    finally:
        await service.stop()
    assert not errors
    logged = [line.split(" ", 2)[-1] for line in lines]
    assert [line for line in logged if not line.startswith("WARNING")] == [
        "INFO callback.service: scheduler quiet is now the active one"], lines
    # a tick that outlasts the interval (a loaded machine, the cold first sweep) is worth a warning
    assert all("skipped: maximum number of running instances" in line
               for line in logged if line.startswith("WARNING")), lines
