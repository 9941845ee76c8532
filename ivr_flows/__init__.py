"""Voice menus as data: the flow engine, its checker, the default flows and prompt texts."""
from __future__ import annotations

from pathlib import Path

FLOWS_DIR = Path(__file__).resolve().parent
PROMPTS_PATH = FLOWS_DIR / "prompts.yaml"


def flow_path(name_or_path: str | Path) -> Path:
    """`main` -> ivr_flows/main.yaml; an existing path is returned as is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return FLOWS_DIR / f"{name_or_path}.yaml"


def flow_files() -> list[Path]:
    """Every flow shipped in ivr_flows/ (all YAML files except prompts.yaml)."""
    return sorted(p for p in FLOWS_DIR.glob("*.yaml") if p.name != PROMPTS_PATH.name)
