"""Tiling geometry: pad / extract / stitch exactness, coverage, pulled-back last tile, tiny and odd sizes."""

import numpy as np
import pytest

from marker_excite.data.tiling import Stitcher, TileLayout, axis_origins
from marker_excite.errors import UserInputError
from marker_excite.models.geometry import UNetGeometry

IN, OUT = 44, 20  # margin 12


def centre_crop(tile: np.ndarray, layout: TileLayout) -> np.ndarray:
    m = layout.margin
    return tile[..., m : m + layout.output_size, m : m + layout.output_size]


def test_axis_origins_pull_last_tile_back():
    assert axis_origins(10, 4) == [0, 4, 6]
    assert axis_origins(8, 4) == [0, 4]
    assert axis_origins(9, 4) == [0, 4, 5]
    assert axis_origins(4, 4) == [0]
    assert axis_origins(3, 4) == [0]
    for size in range(1, 60):
        o = axis_origins(size, 7)
        assert o[-1] + 7 >= size and o[-1] == max(0, size - 7)
        assert all(b - a == 7 for a, b in zip(o[:-2], o[1:-1]))  # regular tiles abut


def test_paper_geometry_from_unet():
    layout = TileLayout.for_geometry((1000, 777), UNetGeometry(), 572)
    assert (layout.input_size, layout.output_size, layout.margin) == (572, 388, 92)
    assert layout.origins_y == [0, 388, 612] and layout.origins_x == [0, 388, 389]


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (20, 20), (21, 20), (33, 17), (64, 101)])
def test_identity_round_trip_is_exact(shape):
    rng = np.random.default_rng(1)
    image = rng.normal(size=(3, *shape)).astype(np.float32)
    layout = TileLayout(shape, IN, OUT)
    tiles = list(layout.tiles(image))
    assert all(t.shape == (3, IN, IN) for t in tiles)
    out = layout.stitch(centre_crop(t, layout) for t in tiles)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(out, image)


def test_round_trip_3d_stack_slice_wise():
    rng = np.random.default_rng(2)
    stack = rng.integers(0, 60000, size=(2, 4, 27, 45)).astype(np.uint16)  # C, Z, Y, X
    layout = TileLayout(stack.shape[-2:], IN, OUT)
    padded = layout.pad(stack)
    assert padded.shape == (2, 4, 27 + 24, 45 + 24)
    assert layout.origins_y == [0, 7] and layout.origins_x == [0, 20, 25]
    out = layout.stitch(centre_crop(layout.extract(padded, i), layout) for i in range(len(layout)))
    np.testing.assert_array_equal(out, stack.astype(np.float32))


def test_input_tile_is_image_around_output_tile_with_zero_padding():
    image = np.arange(30 * 50, dtype=np.float32).reshape(30, 50) + 1
    layout = TileLayout(image.shape, IN, OUT)
    padded = layout.pad(image)
    m = layout.margin
    for i, (y0, x0) in enumerate(layout.origins):
        tile = layout.extract(padded, i)
        for dy, dx in [(0, 0), (IN - 1, IN - 1), (m, m), (m + 5, 3), (2, IN - 2)]:
            y, x = y0 - m + dy, x0 - m + dx
            inside = 0 <= y < 30 and 0 <= x < 50
            assert tile[dy, dx] == (image[y, x] if inside else 0)


def test_output_tiles_cover_every_pixel_and_input_tiles_overlap_by_twice_the_margin():
    layout = TileLayout((47, 61), IN, OUT)
    cover = np.zeros((47, 61), int)
    for y0, x0 in layout.origins:
        cover[y0 : y0 + OUT, x0 : x0 + OUT] += 1
    assert cover.min() >= 1 and cover.max() <= 4
    oy = layout.origins_y
    assert oy[1] - oy[0] == OUT  # input tiles [y0, y0+IN) overlap by IN - OUT = 2 * margin
    assert IN - (oy[1] - oy[0]) == 2 * layout.margin
    assert oy[-1] + OUT == 47 and layout.origins_x[-1] + OUT == 61


def test_overlaps_are_averaged():
    layout = TileLayout((1, 30), IN, OUT)  # x origins 0 and 10: columns 10..19 covered twice
    assert layout.origins == [(0, 0), (0, 10)]
    out = layout.stitch([np.full((OUT, OUT), 1.0), np.full((OUT, OUT), 4.0)])
    np.testing.assert_array_equal(out[0, :10], 1.0)
    np.testing.assert_array_equal(out[0, 10:20], 2.5)
    np.testing.assert_array_equal(out[0, 20:], 4.0)


def test_tiny_image_padded_further_and_cropped_back():
    layout = TileLayout((3, 5), IN, OUT)
    assert len(layout) == 1 and layout.padded_shape_yx == (IN, IN)
    labels = np.ones((3, 5), np.int32)
    padded = layout.pad_output(labels)
    assert padded.shape == (OUT, OUT) and padded.sum() == 15
    np.testing.assert_array_equal(layout.extract_output(padded, 0)[:3, :5], labels)


def test_stitcher_incremental_and_errors():
    layout = TileLayout((25, 25), IN, OUT)
    s = Stitcher(layout)
    s.add(0, np.zeros((OUT, OUT)))
    with pytest.raises(UserInputError, match="every output tile"):
        s.result()
    with pytest.raises(UserInputError, match="expected"):
        s.add(1, np.zeros((OUT + 1, OUT)))
    with pytest.raises(UserInputError, match="even"):
        TileLayout((10, 10), 45, 20)
    with pytest.raises(UserInputError, match="slice shape"):
        layout.pad(np.zeros((24, 25)))
