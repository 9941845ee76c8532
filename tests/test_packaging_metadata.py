"""The package metadata builds without setuptools deprecation warnings (issue 19 item 7)."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    """PEP 639: `project.license` as a table is deprecated (setuptools warns from 77 on)."""
    data = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert isinstance(data["project"]["license"], str)
    assert not any(k.startswith("license-file") and isinstance(v, dict) for k, v in data["project"].items())
    (setuptools,) = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    assert tuple(map(int, re.search(r">=\s*([\d.]+)", setuptools).group(1).split("."))) >= (77,)
    assert not any(c.startswith("License ::") for c in data["project"].get("classifiers", []))
