"""Generated sections of the README: the text between ``<!-- name -->`` and ``<!-- /name -->``.

Pure (no ROS). The modules that own a generated table (diagnostic_counters, graph) replace their
sections with :func:`replace_section`, and :func:`regenerate` is their ``python -m`` entry point.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the section ``name`` replaced by ``body``; ValueError if it has none."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    head, found, rest = text.partition(start)
    if not found:
        raise ValueError(f"README has no {start} section")
    return head + start + "\n" + body + "\n" + end + rest.partition(end)[2]


def regenerate(update: Callable[[str], str]) -> None:
    """Rewrite the README named on the command line (default README.md) with ``update``."""
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    readme.write_text(update(readme.read_text()))
