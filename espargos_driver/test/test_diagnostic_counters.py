"""One source of truth for the drivers' diagnostics counters: the code counts nothing that
diagnostic_counters does not list, and the README's tables list every counter."""
from __future__ import annotations

import re
from pathlib import Path

from espargos_aoa.diagnostic_counters import CounterWarnings
from espargos_driver.diagnostic_counters import (BOARD_ACTIVITY, BOARD_COUNTERS, SWARM_ACTIVITY, SWARM_COUNTERS,
                                                 update_readme)

PACKAGE = Path(__file__).resolve().parents[1] / "espargos_driver"
README = Path(__file__).resolve().parents[2] / "README.md"
COUNTED = re.compile(r'counters\["([a-z_0-9]+)"\]|_count\("([a-z_0-9]+)"\)|(?:Protocol|Report|Board)Error\(\s*"([a-z_0-9]+)"'
                     r'|"([a-z_]+)" if existing')
BOARD_MODULES = ["protocol", "transport", "cluster.py", "receiver.py", "driver.py", "calibration.py", "nodes/managed.py"]
SWARM_MODULES = ["swarm", "nodes/managed.py"]


def counted_in(parts: list[str]) -> set[str]:
    names = set()
    for part in parts:
        path = PACKAGE / part
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for match in COUNTED.finditer(file.read_text()):
                names.add(next(g for g in match.groups() if g))
    return names


def test_board_code_counts_only_listed_counters():
    names = counted_in(BOARD_MODULES)
    assert len(names) > 30
    assert names - set(BOARD_COUNTERS) - set(BOARD_ACTIVITY) == set()


def test_swarm_code_counts_only_listed_counters():
    names = counted_in(SWARM_MODULES)
    assert len(names) > 20
    assert names - set(SWARM_COUNTERS) - set(SWARM_ACTIVITY) - {"keepalive_sent"} == set()


def test_readme_tables_are_the_generated_ones():
    text = README.read_text()
    assert update_readme(text) == text, \
        "README counter tables differ from the lists: run python -m espargos_driver.diagnostic_counters README.md"
    for counters in (BOARD_COUNTERS, SWARM_COUNTERS):
        assert all(f"| `{name}` |" in text for name in counters)


def test_warnings_are_per_counter_with_exact_counts():
    w = CounterWarnings(["a", "b"], every_s=5.0)
    assert w.due({"a": 3}, 0.0) == [("a", 3)]
    assert w.due({"a": 5, "b": 1}, 1.0) == [("b", 1)]          # a is throttled, b is not
    assert w.due({"a": 9, "b": 1}, 5.0) == [("a", 6)]          # every event since a's last report
    assert w.due({"a": 9, "b": 1}, 20.0) == []
