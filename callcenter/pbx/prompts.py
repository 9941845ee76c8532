"""Mandarin voice prompts for Asterisk, rendered from text.

- ``ivr_flows/prompts.yaml`` (``prompts: {name: text}``) -> ``sounds/zh/hotline/<name>.wav`` in the
  Asterisk root, so the dialplan/AGI plays them as ``hotline/<name>`` on a channel of language ``zh``.
- A recording ``config/prompts/<name>.<any format sox reads>`` replaces the synthesized voice.
- ``sounds/zh/digits/*``: the words Asterisk's Chinese number saying asks for (SayNumber, SAY NUMBER),
  synthesized and trimmed of silence; ``config/prompts/digits/<word>.*`` overrides one.
- ``hotline/unit_<code>``: each member unit's name from ``config/units.yaml`` (a citizen's notice says
  who has the case: ivr_flows/citizen_notice.yaml); ``config/prompts/unit_<code>.*`` overrides one.
- ``hotline/short-silence``: 20 ms of silence (benchmarks; the first frame test callers send).

Text-to-speech is ``espeak-ng -v cmn-latn-pinyin`` (plain ``-v cmn`` reads Hanzi as English words on
espeak-ng 1.51), converted by sox to what Asterisk plays without transcoding: 8 kHz mono 16-bit WAV.
A manifest of input hashes next to the files makes a re-run skip whatever did not change.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from callcenter.pbx.root import ProvisionError, ensure_tools, host_path
from callcenter.settings import PROJECT_ROOT, Settings

log = logging.getLogger("callcenter.pbx.prompts")

SOUNDS_ZH = "/usr/share/asterisk/sounds/zh"
PROMPT_DIR = "hotline"  # prompts are referenced as hotline/<name>
MANIFEST = ".callcenter-prompts.json"
VOICE = "cmn-latn-pinyin"
TOOLS = {"espeak-ng": "espeak-ng", "sox": "sox"}
# Bump when the rendering pipeline changes so that everything is rendered again.
RENDER_VERSION = 2

DIGIT_WORDS = {
    **{str(i): w for i, w in enumerate("零一二三四五六七八九")},
    "10": "十", "20": "二十", "30": "三十", "40": "四十", "50": "五十",
    "60": "六十", "70": "七十", "80": "八十", "90": "九十",
    "hundred": "百", "thousand": "千", "wan": "万", "yi": "亿", "minus": "负",
}
SHORT_SILENCE = "short-silence"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# sox: drop leading and trailing silence (espeak adds ~0.3 s, which makes numbers sound slow)
_TRIM = ["silence", "1", "0.01", "1%", "reverse", "silence", "1", "0.01", "1%", "reverse"]
_OUT_FORMAT = ["-r", "8000", "-c", "1", "-b", "16"]
# -D: no dither, so the same input always gives the same bytes (dither noise is random)
_SOX = ["sox", "-D"]


@dataclass
class PromptReport:
    directory: Path  # host path of sounds/zh
    rendered: list[str] = field(default_factory=list)  # relative paths (hotline/greeting.wav) made now
    from_recordings: list[str] = field(default_factory=list)  # of those, made from config/prompts/
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # stale hotline prompts no longer in prompts.yaml

    @property
    def changed(self) -> bool:
        return bool(self.rendered or self.removed)

    def summary(self) -> str:
        if not self.changed:
            return f"prompts: {len(self.unchanged)} up to date, nothing rendered"
        parts = [f"{len(self.rendered)} rendered ({len(self.from_recordings)} from recordings)"]
        if self.removed:
            parts.append(f"{len(self.removed)} removed")
        parts.append(f"{len(self.unchanged)} unchanged")
        return "prompts: " + ", ".join(parts)


@dataclass(frozen=True)
class _Job:
    rel: str  # e.g. "hotline/greeting.wav"
    kind: str  # "tts" | "recording" | "silence"
    text: str = ""
    source: Path | None = None
    trim: bool = False

    def digest(self) -> str:
        payload = {"v": RENDER_VERSION, "kind": self.kind, "text": self.text, "trim": self.trim}
        if self.source is not None:
            payload["source"] = hashlib.sha256(self.source.read_bytes()).hexdigest()
        if self.kind == "tts":
            payload["voice"] = VOICE
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def prompts_file(settings: Settings | None = None) -> Path:
    """The prompt texts, kept with the IVR flows (code, not per-install configuration)."""
    return PROJECT_ROOT / "ivr_flows" / "prompts.yaml"


def load_prompt_texts(path: Path) -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ProvisionError(f"{path} is missing: it lists the IVR prompts (prompts: {{name: text}})") from None
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, dict):
        raise ProvisionError(f"{path}: expected a top-level 'prompts:' mapping of name -> Mandarin text")
    texts: dict[str, str] = {}
    for name, text in prompts.items():
        name = str(name)
        if not _NAME.match(name):
            raise ProvisionError(f"{path}: prompt name {name!r} must be letters, digits, '_' or '-'")
        if not isinstance(text, str) or not text.strip():
            raise ProvisionError(f"{path}: prompt {name!r} has no text")
        texts[name] = text.strip()
    if SHORT_SILENCE in texts:
        raise ProvisionError(f"{path}: {SHORT_SILENCE!r} is reserved (a rendered 20 ms silence)")
    return texts


def unit_prompt_texts(settings: Settings) -> dict[str, str]:
    """The member units' names as prompts (`unit_<code>`), rendered with the flows' prompts."""
    from ivr_flows.actions import unit_prompt_name
    from ticketing.cityconfig import load_units

    try:
        units = load_units(settings.config_dir)
    except (OSError, ValueError):
        return {}  # no city configured (a scratch install): no unit names to say
    return {unit_prompt_name(u.code): u.name for u in units if _NAME.match(unit_prompt_name(u.code))}


def _recording(directory: Path, name: str) -> Path | None:
    """config/prompts/<name>.<ext> (any extension); the first in name order wins."""
    if not directory.is_dir():
        return None
    found = sorted(p for p in directory.glob(f"{name}.*") if p.is_file() and p.stem == name)
    return found[0] if found else None


def _jobs(settings: Settings, texts: dict[str, str]) -> list[_Job]:
    recordings = Path(settings.config_dir) / "prompts"
    jobs = []
    for name, text in texts.items():
        rec = _recording(recordings, name)
        if rec is not None:
            jobs.append(_Job(f"{PROMPT_DIR}/{name}.wav", "recording", source=rec))
        else:
            jobs.append(_Job(f"{PROMPT_DIR}/{name}.wav", "tts", text=text))
    jobs.append(_Job(f"{PROMPT_DIR}/{SHORT_SILENCE}.wav", "silence"))
    for word, text in DIGIT_WORDS.items():
        rec = _recording(recordings / "digits", word)
        if rec is not None:
            jobs.append(_Job(f"digits/{word}.wav", "recording", source=rec, trim=True))
        else:
            jobs.append(_Job(f"digits/{word}.wav", "tts", text=text, trim=True))
    return jobs


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise ProvisionError(f"{cmd[0]} failed ({result.returncode}): {result.stderr.strip()[-500:]}")


def _render(job: _Job, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="prompt-") as tmp:
        staged = Path(tmp) / "out.wav"
        trim = _TRIM if job.trim else []
        if job.kind == "silence":
            _run([*_SOX, "-n", *_OUT_FORMAT, str(staged), "trim", "0", "0.02"])
        elif job.kind == "recording":
            # -G: let sox lower the gain if resampling would clip
            _run([*_SOX, "-G", str(job.source), *_OUT_FORMAT, str(staged), *trim])
        else:
            text_file = Path(tmp) / "text.txt"
            text_file.write_text(job.text, encoding="utf-8")  # a file: text never parsed as options
            speech = Path(tmp) / "speech.wav"
            _run(["espeak-ng", "-v", VOICE, "-w", str(speech), "-f", str(text_file)])
            # -v 0.9 avoids clipping in the rate conversion
            _run([*_SOX, "-v", "0.9", str(speech), *_OUT_FORMAT, str(staged), *trim])
        if staged.stat().st_size <= 44:
            raise ProvisionError(f"rendering {job.rel} produced no audio")
        tmp_out = out.with_name(f".{out.name}.tmp")
        tmp_out.write_bytes(staged.read_bytes())
        os.chmod(tmp_out, 0o644)
        os.replace(tmp_out, out)  # atomic: a call never plays a half-written file


def render_prompts(settings: Settings, prompts_path: Path | None = None) -> PromptReport:
    """Render every prompt of ivr_flows/prompts.yaml (or `prompts_path`), the number words and the
    short silence into the Asterisk root's ``sounds/zh``; skip those whose input did not change.
    Fails (ProvisionError) with a clear message if espeak-ng/sox are missing and cannot be installed."""
    texts = {**unit_prompt_texts(settings), **load_prompt_texts(prompts_path or prompts_file(settings))}
    base = host_path(settings, SOUNDS_ZH)
    report = PromptReport(directory=base)
    manifest_path = base / MANIFEST
    try:
        manifest: dict[str, str] = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        manifest = {}

    jobs = _jobs(settings, texts)
    digests = {job.rel: job.digest() for job in jobs}
    todo = [j for j in jobs if manifest.get(j.rel) != digests[j.rel] or not (base / j.rel).is_file()]
    report.unchanged = sorted(j.rel for j in jobs if j not in todo)
    if todo:
        ensure_tools(TOOLS)
        log.info("rendering %d prompts with espeak-ng and sox (%d up to date)…", len(todo), len(report.unchanged))
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            # list() re-raises the first rendering error here
            list(pool.map(lambda j: _render(j, base / j.rel), todo))
        log.info("%d prompts rendered in %.0f s", len(todo), time.monotonic() - began)
    for job in todo:
        report.rendered.append(job.rel)
        if job.kind == "recording":
            report.from_recordings.append(job.rel)

    wanted = set(digests)
    for rel in sorted(set(manifest) - wanted):
        if rel.startswith(f"{PROMPT_DIR}/"):
            (base / rel).unlink(missing_ok=True)
            report.removed.append(rel)
    if manifest != digests:
        base.mkdir(parents=True, exist_ok=True)
        tmp = manifest_path.with_name(MANIFEST + ".tmp")
        tmp.write_text(json.dumps(digests, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, manifest_path)
    report.rendered.sort()
    report.from_recordings.sort()
    return report
