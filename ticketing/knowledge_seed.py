"""The sample knowledge base (config/knowledge/*.yaml) into the store, loaded by `callcenter seed`.

Each file names its unit and lists entries with a stable `key`. An entry missing from the store is
added as published revision 1 (the config stands for the reviewed base a city starts with); an entry
whose config text changed gets a new published revision; anything else is left alone, so running it
twice changes nothing. Entries that have no search terms yet (made before migration 0015) are
indexed with the city's dictionary.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from ticketing import audit
from ticketing.audit import SYSTEM
from ticketing.knowledge import _apply, clean_content, reindex
from ticketing.knowledge_model import (
    KnowledgeEntry,
    KnowledgeRevision,
    KnowledgeState,
    RevisionState,
)
from ticketing.knowledge_text import Segmenter
from ticketing.models import MemberUnit

DICTIONARY = "dictionary.yaml"


@dataclass
class KnowledgeSeedReport:
    added: int = 0
    updated: int = 0
    indexed: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.indexed)


def load_entries(config_dir: Path) -> list[dict[str, Any]]:
    """Every entry of config/knowledge/*.yaml with its unit code, checked for unique keys."""
    out, keys = [], set()
    for path in sorted((Path(config_dir) / "knowledge").glob("*.yaml")):
        if path.name == DICTIONARY:
            continue
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for item in raw.get("entries") or []:
            key = item["key"]
            if key in keys:
                raise ValueError(f"{path.name}: knowledge key {key!r} is used twice")
            keys.add(key)
            out.append({"unit": item.get("unit", raw.get("unit")), "key": key, "content": {
                "question": item["question"], "variants": item.get("variants") or [], "answer": item["answer"],
                "keywords": item.get("keywords", ""), "category_code": item.get("category"),
                "categories": item.get("categories") or [], "legal_basis": item.get("legal_basis", ""),
                "source_links": item.get("sources") or [], "valid_from": None, "valid_until": None,
                "review_interval_days": item.get("review_interval_days", 365)}})
    return out


def seed_knowledge(session: Session, config_dir: Path, segmenter: Segmenter, now: datetime) -> KnowledgeSeedReport:
    report = KnowledgeSeedReport()
    units = {u.code: u for u in session.execute(select(MemberUnit)).scalars()}
    existing = {e.seed_key: e for e in session.execute(
        select(KnowledgeEntry).where(KnowledgeEntry.seed_key.is_not(None))).scalars()}
    for item in load_entries(config_dir):
        unit = units.get(item["unit"])
        if unit is None:
            raise ValueError(f"knowledge entry {item['key']!r}: no member unit {item['unit']!r} (seed the units first)")
        content = clean_content(item["content"])
        entry = existing.get(item["key"])
        if entry is None:
            entry = KnowledgeEntry(unit_id=unit.id, unit=unit, seed_key=item["key"], updated_at=now)
            session.add(entry)
            number = 1
            report.added += 1
        else:
            seeded = [r for r in entry.revisions if r.written_by_id is None]
            if seeded and seeded[-1].content == content:
                continue  # unchanged in config/ (the unit may have revised it since: theirs stands)
            if len(seeded) != len(entry.revisions):
                continue
            number = entry.revisions[-1].number + 1
            for older in entry.revisions:
                older.state = RevisionState.SUPERSEDED
            report.updated += 1
        _apply(session, entry, content, segmenter)
        entry.state, entry.active, entry.version = KnowledgeState.PUBLISHED, True, number
        entry.published_at = entry.updated_at = now
        entry.review_due_at = now + timedelta(days=entry.review_interval_days)
        session.flush()
        session.add(KnowledgeRevision(entry=entry, number=number, state=RevisionState.PUBLISHED, content=content,
                                      changed=sorted(content), written_at=now, written_by_id=None,
                                      reviewed_at=now, note="config/knowledge"))
    for entry in session.execute(select(KnowledgeEntry).where(KnowledgeEntry.search_terms == "")).scalars():
        reindex(session, entry, segmenter)
        report.indexed += 1
    if report.changed:
        audit.record(session, SYSTEM, "seed_knowledge", at=now,
                     data={"added": report.added, "updated": report.updated, "indexed": report.indexed})
    return report
