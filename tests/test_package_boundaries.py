"""Imports point one way (issue 10 item 3): ticketing/ and ivr_flows/ import no other project
package; agi/ and callback/ import only those two; callcenter/ composes everything. Every import
counts: at the top, inside a function, relative, or a module name given to importlib."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROJECT = ("ticketing", "ivr_flows", "agi", "callback", "callcenter")
ALLOWED = {
    "ticketing": {"ticketing"},
    "ivr_flows": {"ivr_flows"},
    "agi": {"agi", "ticketing", "ivr_flows"},
    "callback": {"callback", "ticketing", "ivr_flows"},
}


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = list(path.relative_to(root).parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            found.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
              in ("import_module", "__import__")):
            found.append((node.lineno, node.args[0].value))
    return sorted(found)


def forbidden_imports(package: str, root: Path = ROOT) -> list[str]:
    allowed = ALLOWED[package]
    problems = []
    for path in sorted((root / package).rglob("*.py")):
        for line, module in imported_modules(path, root):
            top = module.split(".")[0]
            if top in PROJECT and top not in allowed:
                problems.append(f"{path.relative_to(root).as_posix()}:{line} imports {module}")
    return problems


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_issue10_imports_point_one_way(package):
    problems = forbidden_imports(package)
    assert not problems, (f"{package}/ may import only {', '.join(sorted(ALLOWED[package]))} of the project:\n  "
                          + "\n  ".join(problems))


def test_issue10_the_check_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / "callback" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text(
        "import callcenter.settings\n"
        "from ticketing import errors\n"
        "def f():\n"
        "    from agi.hotline import Hotline\n"
        "    import importlib\n"
        "    importlib.import_module('callcenter.ami')\n"
        "from . import fine\n"
        "from ..runner import CallbackRunner\n"
        "if True:\n"
        "    from callcenter import ami\n"
    )
    assert forbidden_imports("callback", tmp_path) == [
        "callback/sub/bad.py:1 imports callcenter.settings",
        "callback/sub/bad.py:4 imports agi.hotline",
        "callback/sub/bad.py:6 imports callcenter.ami",
        "callback/sub/bad.py:10 imports callcenter",
    ]
    assert (8, "callback.runner") in imported_modules(pkg / "bad.py", tmp_path)
