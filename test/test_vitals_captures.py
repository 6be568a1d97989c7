"""The real ESP32 captures in ../shared/data/esp32 through the vital-signs core (read in place).

There is no truth in them: this records what the core says of each (one-way links, the state
and breathing SNR of every window) and checks that it keeps saying it, so that a change to the
core that alters its verdict on real data is seen. The fixture is test/data/vitals_captures.yaml;
``ESPARGOS_REGENERATE=1 pytest test/test_vitals_captures.py`` rewrites it (say why in the commit).
"""
from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
import yaml
from espargos_aoa.sanitize import sanitize
from espargos_aoa.swarm_vitals import ONE_WAY, SwarmLinkVitals
from espargos_aoa.vitals import VitalsConfig
from espargos_driver.swarm.binary import build_datagram
from espargos_driver.swarm.ingest import NodeConfig, SwarmIngest
from espargos_driver.wifi import GRIDS

from conftest import ROOT

DATA = ROOT.parent / "shared" / "data" / "esp32"
FIXTURE = ROOT / "test" / "data" / "vitals_captures.yaml"
needs_captures = pytest.mark.skipif(not DATA.is_dir(), reason=f"real ESP32 captures not found at {DATA}")


def frames_of(capture: str):
    """(link name, time s, NodeFrame) of every report in a capture, in file order."""
    if capture.endswith(".jsonl"):
        ingest = SwarmIngest(Counter(), NodeConfig("esp32", 0, 6))
        for line in (DATA / capture).read_text().splitlines():
            record = json.loads(line)
            if record.get("type") == "raw_csi":
                payload = np.frombuffer(bytes.fromhex(record["iq_hex"]), np.int8)
                for frame in ingest.datagram(build_datagram(record["node_id"], 0, 2437, -50, -90, payload), "ruview",
                                             record["timestamp"]):
                    yield f"node{record['node_id']}", record["timestamp"], frame      # host times: no sensor clock
    else:
        ingest = SwarmIngest(Counter(), NodeConfig("esp32", -1, 0))
        for line in (DATA / capture).read_bytes().splitlines():
            frame = ingest.line(line, "log", 0.0)
            if frame is not None:
                yield "log", frame.report.sensor_time_us * 1e-6, frame


def verdicts(capture: str, window_s: float) -> dict[str, list[list]]:
    """Per link: [window end (s from the first frame), state, breathing SNR dB, rate /min] of
    every window, one per second."""
    config = VitalsConfig(window_s=window_s, min_window_s=min(20.0, window_s))
    links: dict[str, SwarmLinkVitals] = {}
    out: dict[str, list[list]] = {}
    start = None
    for name, t, frame in frames_of(capture):
        start = t if start is None else start
        grid = GRIDS[frame.csi.format]
        valid = np.isin(np.arange(grid.size), frame.csi.interpolated, invert=True)
        report = sanitize(frame.csi.csi, grid.indices.astype(float), valid)
        link = links.setdefault(name, SwarmLinkVitals(ONE_WAY, config, 0.002))
        link.add(True, t, t - start, report, grid.indices)
        for e in link.due(1.0):
            out.setdefault(name, []).append([round(e.t_end_s, 2), e.state, round(float(e.snr_db), 1),
                                             round(float(e.rate_bpm), 1)])
    return out


CAPTURES = {"esp-csi_console-test_ht40-below.csv": 15.0, "ruview_pretrain_esp32s3.csi.jsonl": 30.0}


@needs_captures
@pytest.mark.parametrize("capture", sorted(CAPTURES))
def test_real_captures_give_the_recorded_verdicts(capture):
    got = verdicts(capture, CAPTURES[capture])
    assert got and all(len(v) >= 5 for v in got.values()), got
    summary = {name: dict(Counter(v[1] for v in values)) for name, values in got.items()}
    print(f"{capture}: {summary}")
    if os.environ.get("ESPARGOS_REGENERATE"):
        fixture = yaml.safe_load(FIXTURE.read_text()) if FIXTURE.exists() else {}
        fixture[capture] = got
        FIXTURE.write_text(yaml.safe_dump(fixture, default_flow_style=None, width=120))
    want = yaml.safe_load(FIXTURE.read_text())[capture]
    assert set(got) == set(want)
    for name in want:
        assert len(got[name]) == len(want[name])
        for g, w in zip(got[name], want[name]):
            assert g[:2] == w[:2] and g[2] == pytest.approx(w[2], abs=0.3, nan_ok=True) \
                and g[3] == pytest.approx(w[3], abs=0.3, nan_ok=True), (name, g, w)
