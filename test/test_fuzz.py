"""A short, bounded fuzz pass of every parser family through the full receive path
(benchmarks/fuzz.py; the long run is on demand: python benchmarks/fuzz.py --inputs 1000000)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("fuzz", Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz.py")
fuzz = sys.modules["fuzz"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

INPUTS = 20_000


@pytest.mark.parametrize("family", fuzz.FAMILIES)
def test_no_input_escapes_or_hangs(family):
    result = fuzz.fuzz(family, INPUTS, seed=7, budget_ms=1000.0)
    print(result.line())
    assert result.unexpected == 0, result.sites.most_common(5)
    assert result.hangs == 0, f"slowest input {result.max_ms:.0f} ms"
    assert result.messages > INPUTS // 20, "the mutations no longer reach message building"
    assert max(result.rss_mb) - result.rss_mb[0] < 20
