"""ament_flake8 and ament_pep257 over every Python file of the repository, as `colcon test` runs
them for ROS packages. Settings: the repository's .flake8 (ament_flake8's own list plus the code's
line length, quotes and docstring convention); ament_pep257 ignores the same D codes."""
from __future__ import annotations

import configparser
import re

import pytest
from ament_flake8.main import main_with_errors as flake8_main
from ament_pep257.main import main as pep257_main

from conftest import ROOT

LINTED = ("espargos_driver", "espargos_aoa", "test", "benchmarks")
"""Folders with Python code (the launch files sit in espargos_driver/launch)."""
FLAKE8_CONFIG = ROOT / ".flake8"


def ignored_codes() -> list[str]:
    """The codes .flake8 ignores (its extend-ignore list, comments dropped)."""
    parser = configparser.ConfigParser(inline_comment_prefixes=("#",))
    parser.read(FLAKE8_CONFIG)
    return re.findall(r"[A-Z]+[0-9]+", parser["flake8"]["extend-ignore"])


@pytest.mark.linter
def test_flake8():
    rc, errors = flake8_main(argv=["--config", str(FLAKE8_CONFIG), *(str(ROOT / d) for d in LINTED)])
    assert rc == 0, f"flake8: {len(errors)} errors:\n" + "\n".join(errors[:50])


@pytest.mark.linter
def test_pep257():
    docstring_codes = [code for code in ignored_codes() if code.startswith("D")]
    assert {"D100", "D213", "D400"} <= set(docstring_codes)           # ament's defaults and the convention
    rc = pep257_main(argv=["--ignore", *docstring_codes, *(str(ROOT / d) for d in LINTED)])
    assert rc == 0, "pep257 found problems (listed above)"
