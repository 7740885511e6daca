import pytest

from marker_excite.models.geometry import GeometryError, UNetGeometry


def test_paper_geometry():
    g = UNetGeometry()
    assert g.output_size(572) == 388
    assert g.margin(572) == 92
    assert g.skip_crops(572) == [88, 40, 16, 4]
    assert g.input_for_output(388) == 572


def test_invalid_size_names_nearest_valid():
    g = UNetGeometry()
    with pytest.raises(GeometryError, match="nearest valid sizes: 556, 572"):
        g.output_size(570)


@pytest.mark.parametrize("depth,inp,out", [(1, 10, 6), (2, 20, 4), (3, 44, 4), (4, 92, 4), (3, 124, 84)])
def test_other_depths(depth, inp, out):
    g = UNetGeometry(depth=depth)
    assert g.output_size(inp) == out
    assert g.margin(inp) == (inp - out) // 2


def test_valid_inputs_step_and_constant_margin():
    g = UNetGeometry(depth=3)
    valid = g.valid_inputs(40, 140)
    assert all(b - a == 4 for a, b in zip(valid, valid[1:]))
    assert {g.margin(v) for v in valid} == {20}
