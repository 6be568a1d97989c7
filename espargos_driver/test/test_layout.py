"""Combined-array layouts: the pyespargos YAML as is, orientations, geometry, and refusals with reasons."""
import numpy as np
import pytest
import yaml

from espargos_driver.geometry import board_antenna_positions
from espargos_driver.layout import LayoutError, load_layout, single_board_layout

# main:config/aperture-kit-8x4.yml (spec section 6): 4 boards, each rotated W, 4 rows x 8 columns.
APERTURE_KIT_8X4 = """
combined-array:
  boards:
    ba1: {host: 192.168.1.3, cable: {length: 0.0, velocity_factor: 0.76}}
    ba2: {host: 192.168.1.4, cable: {length: 0.0, velocity_factor: 0.76}}
    ba3: {host: 192.168.1.5, cable: {length: 0.0, velocity_factor: 0.76}}
    ba4: {host: 192.168.1.6, cable: {length: 0.0, velocity_factor: 0.76}}
  array:
    - ["ba1.1.0", "ba1.0.0", "ba2.1.0", "ba2.0.0", "ba3.1.0", "ba3.0.0", "ba4.1.0", "ba4.0.0"]
    - ["ba1.1.1", "ba1.0.1", "ba2.1.1", "ba2.0.1", "ba3.1.1", "ba3.0.1", "ba4.1.1", "ba4.0.1"]
    - ["ba1.1.2", "ba1.0.2", "ba2.1.2", "ba2.0.2", "ba3.1.2", "ba3.0.2", "ba4.1.2", "ba4.0.2"]
    - ["ba1.1.3", "ba1.0.3", "ba2.1.3", "ba2.0.3", "ba3.1.3", "ba3.0.3", "ba4.1.3", "ba4.0.3"]
"""

TWO_STACKED = {"boards": {"top": {"host": "a", "cable": {"length": 0.5}}, "bottom": {"host": "b"}},
               "array": [[f"top.{r}.{c}" for c in range(4)] for r in range(2)]
               + [[f"bottom.{r}.{c}" for c in range(4)] for r in range(2)]}


def test_pyespargos_aperture_kit_is_read_as_is():
    layout = load_layout(yaml.safe_load(APERTURE_KIT_8X4))
    assert layout.shape == (4, 8) and [b.name for b in layout.boards] == ["ba1", "ba2", "ba3", "ba4"]
    assert layout.orientations == ["W"] * 4
    assert layout.boards[2].host == "192.168.1.5" and layout.boards[2].http_port == 80
    assert layout.labels()[:3] == ["ba1.1.0", "ba1.0.0", "ba2.1.0"]
    values = np.arange(32).reshape(4, 2, 4)                  # board-major flat index
    assert layout.gather(values)[0, 2] == 8 + 4              # ba2.1.0
    pos = layout.positions()
    assert pos.shape == (4, 8, 3) and np.allclose(np.diff(pos[0, :, 1]), 0.06)
    np.testing.assert_allclose(layout.board_positions().reshape(-1, 3)[layout.cells.reshape(-1)], pos.reshape(-1, 3))


def test_stacked_boards_and_cables():
    layout = load_layout(TWO_STACKED)
    assert layout.shape == (4, 4) and layout.orientations == ["N", "N"] and layout.reference_board == 0
    assert layout.boards[0].cable_length_m == 0.5 and layout.boards[1].velocity_factor == 0.76
    assert layout.positions()[0, 0, 2] == pytest.approx(0.09)


def test_single_board_layout_is_the_board():
    layout = single_board_layout("b", "h")
    np.testing.assert_allclose(layout.positions(), board_antenna_positions())
    assert layout.gather(np.arange(8).reshape(1, 2, 4)).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


@pytest.mark.parametrize("change, message", [
    (lambda d: d["array"][3].__setitem__(0, "top.0.0"), "top.0.0 appears twice (overlapping antennas)"),
    (lambda d: d["boards"].__setitem__("spare", {"host": "c"}), "board 'spare' is defined under 'boards' but missing"),
    (lambda d: d["array"][0].__setitem__(0, "ghost.0.0"), "board 'ghost' is not defined"),
    (lambda d: d["array"][0].__setitem__(0, "top.2.0"), "rows 0..1 and columns 0..3"),
    (lambda d: d["array"][0].__setitem__(0, "top00"), "expected"),
    (lambda d: d["array"][0].pop(), "rows of 'array' differ in length"),
    (lambda d: d["boards"]["top"].pop("host"), "needs a host"),
    (lambda d: d["boards"]["top"].__setitem__("cable", {"velocity_factor": 1.5}), "velocity_factor"),
    (lambda d: d.__setitem__("reference", "nobody"), "reference board 'nobody'"),
])
def test_layout_refusals_say_what_is_wrong(change, message):
    data = yaml.safe_load(yaml.safe_dump(TWO_STACKED))
    change(data)
    with pytest.raises(LayoutError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_layout(data)


def test_a_board_must_be_a_rigid_block():
    data = yaml.safe_load(yaml.safe_dump(TWO_STACKED))
    data["array"][0][0], data["array"][0][1] = data["array"][0][1], data["array"][0][0]
    with pytest.raises(LayoutError, match="not laid out as a rigid 2x4 block"):
        load_layout(data)
