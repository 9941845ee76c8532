"""The logrotate configuration we ship for the hotline's log file and Asterisk's logs.

`callcenter logs logrotate` prints it for this install (paths from the settings and the Asterisk
root, callcenter/pbx/root.py); install it as /etc/logrotate.d/callcenter. Not rotated here:
Asterisk's CEL file, which the call log's gap-filler rotates itself once it has read it
(callcenter/callcontrol/cel.py).
"""
from __future__ import annotations

import shlex
from pathlib import Path

from callcenter.logs import log_file_path
from callcenter.pbx.render import render_template
from callcenter.pbx.root import ASTERISK_BIN, host_path, in_root, install_mode
from callcenter.settings import Settings

ASTERISK_LOGS = "/var/log/asterisk"  # asterisk/asterisk.conf astlogdir, inside the root
ASTERISK_LOG_FILES = ("messages.log",)  # asterisk/logger.conf [logfiles] (console goes to the console log)

_HOTLINE = """\
# The hotline's own log (CALLCENTER_LOG_FILE). Its WatchedFileHandler notices the file was moved
# and opens a new one: no signal, no copytruncate.
@@HOTLINE_LOG@@ {
    daily
    rotate 14
    maxsize 100M
    missingok
    notifempty
    compress
    delaycompress
}

"""

_MAIN = """\
# The 12345 hotline's log files; rendered by `callcenter logs logrotate` for this install.
# Install as /etc/logrotate.d/callcenter (root-owned, mode 0644).

@@HOTLINE@@@@ASTERISK@@# Asterisk's console output (`callcenter asterisk start` redirects it); Asterisk keeps the file
# open, so it is copied and truncated in place.
@@CONSOLE_LOG@@ {
    weekly
    rotate 4
    maxsize 20M
    missingok
    notifempty
    compress
    copytruncate
}
"""

_ASTERISK = """\
# Asterisk's log files (asterisk/logger.conf); `logger reload` makes Asterisk reopen them.
@@ASTERISK_FILES@@ {
    weekly
    rotate 8
    maxsize 100M
    missingok
    notifempty
    compress
    delaycompress
    sharedscripts
    postrotate
        @@LOGGER_RELOAD@@ >/dev/null 2>&1 || true
    endscript
}

"""

# The distribution's asterisk package (host mode) rotates /var/log/asterisk itself
# (/etc/logrotate.d/asterisk); naming a file twice is an error for logrotate.
_ASTERISK_BY_PACKAGE = """\
# Asterisk's log files: rotated by the asterisk package's own /etc/logrotate.d/asterisk.

"""


def render(settings: Settings) -> str:
    """The logrotate configuration of this install (absolute host paths)."""
    hotline = log_file_path(settings)
    logs = host_path(settings, ASTERISK_LOGS)
    reload = " ".join(shlex.quote(a) for a in in_root(settings, [ASTERISK_BIN, "-rx", "logger reload"]))
    if install_mode(settings) == "host":
        asterisk = _ASTERISK_BY_PACKAGE
    else:
        asterisk = render_template(_ASTERISK, {
            "ASTERISK_FILES": " ".join(_quoted(logs / name) for name in ASTERISK_LOG_FILES),
            "LOGGER_RELOAD": reload})
    return render_template(_MAIN, {
        "HOTLINE": render_template(_HOTLINE, {"HOTLINE_LOG": _quoted(hotline)}) if hotline else "",
        "ASTERISK": asterisk,
        "CONSOLE_LOG": _quoted(Path(settings.state_dir) / "asterisk-console.log"),
    })


def _quoted(path: Path) -> str:
    # logrotate takes double quotes around a path with spaces
    text = str(Path(path).absolute())
    return f'"{text}"' if any(c.isspace() for c in text) else text
