"""Packaging as colcon and rosdep see it: `colcon test` runs each package's tests with pytest
(it falls back to unittest, which finds none of them, when setup.py does not declare pytest),
and package.xml declares every module the package's code imports."""
from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT

PACKAGES = ("espargos_driver", "espargos_aoa")
ROSDEP_KEYS = {
    "numpy": "python3-numpy", "yaml": "python3-yaml", "aiohttp": "python3-aiohttp", "websockets": "python3-websockets",
    "serial": "python3-serial", "scipy": "python3-scipy", "matplotlib": "python3-matplotlib",
}
"""Imported module -> rosdep key, where they differ; ROS packages are their own key."""
NO_ROSDEP_KEY = {"rosbags"}
"""Installed with pip (README, 'Dependencies without a rosdep key')."""


def setup_keywords(package: str) -> dict:
    """The literal keyword arguments of the package's setup() call."""
    tree = ast.parse((ROOT / package / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    out = {}
    for kw in call.keywords:
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            out[kw.arg] = None
    return out


def declared(package: str, tags: tuple[str, ...]) -> set[str]:
    root = ET.parse(ROOT / package / "package.xml").getroot()
    return {e.text.strip() for tag in tags for e in root.iter(tag)}


@pytest.mark.parametrize("package", PACKAGES)
def test_colcon_test_runs_the_package_tests_with_pytest(package):
    assert "pytest" in setup_keywords(package)["extras_require"]["test"]
    assert "python3-pytest" in declared(package, ("test_depend",))
    tests = sorted((ROOT / package / "test").glob("test_*.py"))
    assert len(tests) >= 2, f"{package}/test has {len(tests)} test files"
    count = sum(t.read_text().count("\ndef test_") for t in tests)
    assert count >= 20, f"only {count} tests in {package}/test: colcon test would report next to nothing"


@pytest.mark.parametrize("package", PACKAGES)
def test_package_xml_declares_every_import(package):
    imported = set()
    for path in (ROOT / package / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {package, "__future__"} - NO_ROSDEP_KEY
    keys = declared(package, ("depend", "exec_depend", "build_export_depend"))
    missing = sorted(m for m in third_party if ROSDEP_KEYS.get(m, m) not in keys)
    assert not missing, f"{package}/package.xml lacks exec_depend for imports {missing}"
