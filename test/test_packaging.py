"""Packaging as colcon and rosdep see it: `colcon test` runs each package's tests with pytest
(it falls back to unittest, which finds none of them, when setup.py does not declare pytest),
and package.xml declares every module the package's code imports."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGES = ("espargos_driver", "espargos_aoa")
ROSDEP_KEYS = {
    "numpy": "python3-numpy", "yaml": "python3-yaml", "aiohttp": "python3-aiohttp", "websockets": "python3-websockets",
    "serial": "python3-serial", "scipy": "python3-scipy", "matplotlib": "python3-matplotlib", "pytest": "python3-pytest",
}
"""Imported module -> rosdep key, where they differ; ROS packages are their own key."""
NO_ROSDEP_KEY = {"rosbags"}
"""Installed with pip (README, 'Dependencies without a rosdep key')."""


def setup_keywords(folder: Path) -> dict:
    """The literal keyword arguments of the setup() call in ``folder``/setup.py."""
    tree = ast.parse((folder / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    out = {}
    for kw in call.keywords:
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            out[kw.arg] = None
    return out


def declared(folder: Path, tags: tuple[str, ...]) -> set[str]:
    """Dependency keys of ``folder``/package.xml under ``tags``."""
    root = ET.parse(folder / "package.xml").getroot()
    return {e.text.strip() for tag in tags for e in root.iter(tag)}


COLCON_PACKAGES = {"espargos_driver": "espargos_driver", "espargos_aoa": "espargos_aoa",
                   "espargos_system_tests": "test"}
"""The ament_python packages whose tests ``colcon test`` runs: name -> folder."""
MIN_TESTS = {"espargos_driver": 120, "espargos_aoa": 25, "espargos_system_tests": 100}
"""Fewer tests than this in a package means tests were lost (e.g. colcon falling back to unittest)."""


@pytest.fixture(scope="module")
def sourced_jazzy_plugins(tmp_path_factory) -> dict:
    """An environment with what a sourced /opt/ros/jazzy adds for pytest: launch_testing's plugin,
    whose hook takes the ``path`` argument pytest 9 removed (pytest stops with exit 3). A stand-in
    with that very hook signature, registered the way the jazzy package registers it."""
    site = tmp_path_factory.mktemp("site")
    (site / "launch_testing-3.4.3.dist-info").mkdir()
    (site / "launch_testing-3.4.3.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: launch_testing\nVersion: 3.4.3\n")
    (site / "launch_testing-3.4.3.dist-info" / "entry_points.txt").write_text(
        "[pytest11]\nlaunch_testing = stand_in_launch_testing_hooks\n")
    (site / "stand_in_launch_testing_hooks.py").write_text(
        "def pytest_pycollect_makemodule(path, parent):\n    return None\n")
    return {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_the_stand_in_plugin_stops_a_bare_pytest(sourced_jazzy_plugins, tmp_path):
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    clash = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                           cwd=tmp_path, env=sourced_jazzy_plugins, capture_output=True, text=True, timeout=120)
    assert clash.returncode == 3 and "declared in the hookimpl" in clash.stdout + clash.stderr


@pytest.mark.parametrize("package", COLCON_PACKAGES)
def test_colcon_test_runs_the_package_tests_with_pytest(package, sourced_jazzy_plugins):
    """What ``colcon test`` runs for an ament_python package: pytest (only if setup.py declares it
    for tests), started in the package folder. Collect the same way, beside the plugins a sourced
    Jazzy adds (pytest.ini turns them off), and count."""
    folder = ROOT / COLCON_PACKAGES[package]
    assert "pytest" in setup_keywords(folder)["extras_require"]["test"]
    assert "python3-pytest" in declared(folder, ("test_depend",))
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=folder, env=sourced_jazzy_plugins, capture_output=True, text=True, timeout=300)
    found = re.search(r"(\d+) tests? collected", done.stdout)
    count = int(found.group(1)) if found else 0
    assert done.returncode == 0 and count >= MIN_TESTS[package], \
        f"{package}: pytest collects {count} tests (at least {MIN_TESTS[package]} expected): " \
        f"{done.stdout[-2000:]}{done.stderr[-2000:]}"


def test_the_packages_depend_on_each_other_without_a_cycle():
    """colcon and bloom order packages by every dependency kind; a cycle makes both refuse."""
    ours = {ET.parse(ROOT / folder / "package.xml").getroot().findtext("name"): ROOT / folder
            for folder in ("espargos_msgs", *COLCON_PACKAGES.values())}
    edges = {name: declared(path, ("depend", "build_depend", "exec_depend", "test_depend", "buildtool_depend"))
             & set(ours) for name, path in ours.items()}
    order: list[str] = []
    while edges:
        ready = sorted(name for name, deps in edges.items() if deps <= set(order))
        assert ready, f"dependency cycle among {sorted(edges)}: {edges}"
        order += ready
        for name in ready:
            del edges[name]
    assert order.index("espargos_aoa") < order.index("espargos_driver") < order.index("espargos_system_tests")


def test_launch_and_config_files_are_inside_the_package_that_installs_them():
    """A per-package build (bloom, sdist) sees only the package folder; data_files must not leave it."""
    for folder in COLCON_PACKAGES.values():
        text = (ROOT / folder / "setup.py").read_text()
        assert "data_files" in text and "../" not in text, f"{folder}/setup.py installs files from outside its folder"
    installed = {p.name for p in (ROOT / "espargos_driver" / "launch").glob("*.launch.py")}
    assert installed == {p.name for p in (ROOT / "launch").glob("*.launch.py")} and len(installed) == 5


def imports(files) -> set[str]:
    """Top-level modules the files import absolutely."""
    imported = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    return imported - set(sys.stdlib_module_names) - {"__future__"} - NO_ROSDEP_KEY


@pytest.mark.parametrize("package", PACKAGES)
def test_package_xml_declares_every_import(package):
    third_party = imports((ROOT / package / package).rglob("*.py")) - {package}
    keys = declared(ROOT / package, ("depend", "exec_depend", "build_export_depend"))
    missing = sorted(m for m in third_party if ROSDEP_KEYS.get(m, m) not in keys)
    assert not missing, f"{package}/package.xml lacks exec_depend for imports {missing}"
    test_files = list((ROOT / package / "test").glob("*.py"))
    tests = imports(test_files) - {package} - {p.stem for p in test_files}      # a test may import a sibling
    keys |= declared(ROOT / package, ("test_depend",))
    missing = sorted(m for m in tests if ROSDEP_KEYS.get(m, m) not in keys)
    assert not missing, f"{package}/package.xml lacks test_depend for test imports {missing}"


def test_the_system_tests_declare_what_they_import():
    files = [p for p in (ROOT / "test").glob("*.py") if p.name != "setup.py"]
    local = {p.stem for p in files}
    modules = imports(files) - local
    modules |= set(re.findall(r'importorskip\("([a-z_0-9]+)"', "".join(p.read_text() for p in files)))
    keys = declared(ROOT / "test", ("test_depend",))
    missing = sorted(m for m in modules if ROSDEP_KEYS.get(m, m) not in keys)
    assert not missing, f"test/package.xml lacks test_depend for {missing}"
