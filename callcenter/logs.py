"""The one logging set-up of every `callcenter` command, the hotline process included.

Quiet by default: state changes and problems, not every scheduler tick or HTTP request
(QUIET_LOGGERS); `--verbose` shows everything. Plain text or JSON lines (one object per line, for
journald/Loki/ELK), to stderr (systemd's journal) or to a file under the state directory that
logrotate may move away (WatchedFileHandler reopens it). Every record passes `PrivacyFilter`, a
safety net that masks phone and ID numbers with ticketing.privacy whatever logger wrote them.

Settings (callcenter/settings.py): CALLCENTER_LOG_LEVEL, CALLCENTER_LOG_FORMAT (text|json),
CALLCENTER_LOG_FILE (relative: under the state directory).
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from ticketing.privacy import mask_text

# Libraries that speak at INFO on every tick or request: WARNING unless --verbose.
# apscheduler: "Running job ..." / "... executed successfully" every sweep; uvicorn.access and
# httpx/httpcore: a line per request; alembic: a line per migration step checked.
QUIET_LOGGERS = ("apscheduler", "uvicorn.access", "httpx", "httpcore", "alembic", "asyncio", "multipart")
# uvicorn.Config/uvicorn.run options: no logging set-up of uvicorn's own (its handlers would bypass
# ours, the masking and the JSON format); its records propagate to the root logger instead.
UVICORN = {"log_config": None, "log_level": None}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came from `extra=` and is structured data.
# (uvicorn's color_message: the message again, with terminal colour codes)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName",
                                                                                "color_message"}
_MARK = "_callcenter_handler"  # on the handlers this module installed (set-up may run again)


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """What the caller passed as `extra=` (call id, case number, ...)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class PrivacyFilter(logging.Filter):
    """Masks every phone and ID number in a record's message, arguments, string extras and
    traceback (ticketing.privacy.mask_text): whatever a library or a careless line logs, the
    number does not reach the log in clear. Our own code masks fields before logging; this is
    the net under it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_masked", False):  # a record goes through every handler: mask once
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: let the handler report it as usual
            return True
        record.msg, record.args = mask_text(message), None
        for key, value in extras(record).items():
            if isinstance(value, str):
                setattr(record, key, mask_text(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        record._masked = True
        return True


class TextFormatter(logging.Formatter):
    """``2026-03-05 09:00:00,123 INFO agi.hotline: message [key=value ...]``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        data = extras(record)
        if not data:
            return line
        first, nl, rest = line.partition("\n")  # a traceback stays below the line
        return first + " [" + " ".join(f"{k}={v}" for k, v in data.items()) + "]" + nl + rest


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 with the zone), level, logger, message, the
    record's extras, and exception (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        for key, value in extras(record).items():
            out.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


class _Stderr(logging.StreamHandler):
    """Writes to the sys.stderr of the moment (click's test runner swaps it), like logging's lastResort."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # noqa: D102
        return sys.stderr


def log_file_path(settings) -> Path | None:
    """The hotline's log file, or None (stderr: systemd's journal keeps it)."""
    if not settings.log_file:
        return None
    path = Path(settings.log_file)
    return path if path.is_absolute() else Path(settings.state_dir) / path


def setup(settings=None, *, verbose: bool = False) -> logging.Handler:
    """Configure the root logger from `settings` (default: get_settings()); run again, it replaces
    what it installed before and leaves other handlers (a test's capture) alone. Returns the handler."""
    if settings is None:
        from callcenter.settings import get_settings
        settings = get_settings()
    level = logging.DEBUG if verbose else logging.getLevelNamesMapping()[settings.log_level.upper()]
    path = log_file_path(settings)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # delay: a command that logs nothing does not create the file (as root, before the service user)
        handler: logging.Handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8", delay=True)
    else:
        handler = _Stderr()
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(PrivacyFilter())
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    # verbose: their INFO lines (each scheduler run, each request) but not their DEBUG chatter
    quiet = logging.INFO if verbose or level < logging.INFO else max(level, logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # handlers a default uvicorn.run() left would bypass the masking and the format
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    return handler
