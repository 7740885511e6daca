"""Tiling geometry of a valid-convolution network (pure numpy): pad, cut input tiles, stitch outputs.

For a slice of ``Y x X`` pixels and a network mapping ``input_size`` to ``output_size`` pixels
(margin ``m = (input_size - output_size) / 2``, e.g. 572 -> 388, m = 92):

* output tiles of ``output_size`` abut each other; the last tile of each axis is pulled back inside
  the slice (it overlaps its neighbour instead of leaving the slice);
* the slice is zero-padded by ``m`` on every side (and further at the bottom/right when it is smaller
  than one output tile), so the input tile of an output tile at ``(y0, x0)`` is
  ``padded[y0 : y0 + input_size, x0 : x0 + input_size]`` -- input tiles overlap by ``2 m``;
* stitching places each output tile at its origin and averages where tiles overlap; the result is
  cropped back to ``Y x X``;
* :func:`predict_tiled` runs a network over all tiles of a padded slice and stitches its outputs: the
  ONE place where tiles become a slice, shared by ``predict``, evaluation and validation (so an
  evaluation counts exactly the voxels, and the values, that ``predict`` writes).

All functions work on arrays ``[..., Y, X]`` (any leading axes: channels, slices of a 3D stack).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from marker_excite.errors import UserInputError


def axis_origins(size: int, output_size: int) -> list[int]:
    """Origins of the output tiles along one axis: steps of ``output_size``, the last pulled back."""
    if size < 1 or output_size < 1:
        raise UserInputError(f"tile axis size {size} and output size {output_size} must be positive")
    if size <= output_size:
        return [0]
    origins = list(range(0, size - output_size, output_size))
    origins.append(size - output_size)
    return origins


@dataclass(frozen=True)
class TileLayout:
    """Tiles covering one 2D slice of ``shape_yx`` for a network ``input_size -> output_size``."""

    shape_yx: tuple[int, int]
    input_size: int
    output_size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape_yx", tuple(int(s) for s in self.shape_yx))
        diff = self.input_size - self.output_size
        if self.output_size < 1 or diff < 0 or diff % 2:
            raise UserInputError(
                f"tile sizes input {self.input_size} -> output {self.output_size}: the output must be positive and "
                "smaller than the input by an even number of pixels"
            )
        if len(self.shape_yx) != 2 or min(self.shape_yx) < 1:
            raise UserInputError(f"slice shape must be two positive sizes (Y, X), got {self.shape_yx}")

    @classmethod
    def for_geometry(cls, shape_yx: Sequence[int], geometry, input_size: int) -> TileLayout:
        """Layout for a :class:`~marker_excite.models.geometry.UNetGeometry` at ``input_size``."""
        return cls(tuple(shape_yx), int(input_size), int(geometry.output_size(input_size)))  # type: ignore[arg-type]

    @property
    def margin(self) -> int:
        """Zero padding per side (92 at 572 -> 388)."""
        return (self.input_size - self.output_size) // 2

    @property
    def origins_y(self) -> list[int]:
        return axis_origins(self.shape_yx[0], self.output_size)

    @property
    def origins_x(self) -> list[int]:
        return axis_origins(self.shape_yx[1], self.output_size)

    @property
    def origins(self) -> list[tuple[int, int]]:
        """Output-tile origins ``(y0, x0)`` in slice coordinates, row by row."""
        return [(y, x) for y in self.origins_y for x in self.origins_x]

    def __len__(self) -> int:
        return len(self.origins_y) * len(self.origins_x)

    @property
    def covered_yx(self) -> tuple[int, int]:
        """Extent covered by output tiles (the slice, or one tile when the slice is smaller)."""
        return tuple(max(s, self.output_size) for s in self.shape_yx)  # type: ignore[return-value]

    @property
    def padded_shape_yx(self) -> tuple[int, int]:
        return tuple(c + 2 * self.margin for c in self.covered_yx)  # type: ignore[return-value]

    def pad(self, image: np.ndarray) -> np.ndarray:
        """Zero-pad ``[..., Y, X]`` by the margin (and up to one output tile for tiny slices)."""
        image = np.asarray(image)
        self._check(image)
        m = self.margin
        (cy, cx), (y, x) = self.covered_yx, self.shape_yx
        widths = [(0, 0)] * (image.ndim - 2) + [(m, m + cy - y), (m, m + cx - x)]
        return np.pad(image, widths)

    def pad_output(self, array: np.ndarray, value: int | float = 0) -> np.ndarray:
        """Pad ``[..., Y, X]`` (e.g. a label map) at the bottom/right up to the covered extent."""
        array = np.asarray(array)
        self._check(array)
        (cy, cx), (y, x) = self.covered_yx, self.shape_yx
        if (cy, cx) == (y, x):
            return array
        widths = [(0, 0)] * (array.ndim - 2) + [(0, cy - y), (0, cx - x)]
        return np.pad(array, widths, constant_values=value)

    def extract(self, padded: np.ndarray, index: int) -> np.ndarray:
        """Input tile ``[..., input_size, input_size]`` number ``index`` (a view) of a padded array."""
        y0, x0 = self.origins[index]
        return padded[..., y0 : y0 + self.input_size, x0 : x0 + self.input_size]

    def extract_output(self, array: np.ndarray, index: int) -> np.ndarray:
        """Output-sized tile ``[..., output_size, output_size]`` of an array padded by :meth:`pad_output`."""
        y0, x0 = self.origins[index]
        return array[..., y0 : y0 + self.output_size, x0 : x0 + self.output_size]

    def tiles(self, image: np.ndarray) -> Iterator[np.ndarray]:
        """All input tiles of an unpadded ``[..., Y, X]`` array, in :attr:`origins` order."""
        padded = self.pad(image)
        for i in range(len(self)):
            yield self.extract(padded, i)

    def stitch(self, outputs: Iterable[np.ndarray]) -> np.ndarray:
        """Assemble output tiles (in :attr:`origins` order) into ``[..., Y, X]``, averaging overlaps."""
        stitcher = Stitcher(self)
        for i, out in enumerate(outputs):
            stitcher.add(i, out)
        return stitcher.result()

    def _check(self, array: np.ndarray) -> None:
        if array.ndim < 2 or tuple(array.shape[-2:]) != self.shape_yx:
            raise UserInputError(
                f"array of shape {array.shape} does not end in the layout's slice shape {self.shape_yx}"
            )


class Stitcher:
    """Accumulates output tiles one by one (float64 sums and counts); :meth:`result` averages them."""

    def __init__(self, layout: TileLayout) -> None:
        self.layout = layout
        self._sum: np.ndarray | None = None
        self._count = np.zeros(layout.covered_yx, dtype=np.uint8)

    def add(self, index: int, output: np.ndarray) -> None:
        """Add the output tile ``[..., output_size, output_size]`` of tile ``index``."""
        output = np.asarray(output)
        s = self.layout.output_size
        if output.shape[-2:] != (s, s):
            raise UserInputError(f"output tile {index} has shape {output.shape}, expected [..., {s}, {s}]")
        if self._sum is None:
            self._sum = np.zeros((*output.shape[:-2], *self.layout.covered_yx), dtype=np.float64)
        y0, x0 = self.layout.origins[index]
        self._sum[..., y0 : y0 + s, x0 : x0 + s] += output
        self._count[y0 : y0 + s, x0 : x0 + s] += 1

    def result(self, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """The stitched ``[..., Y, X]`` array; every pixel must be covered by at least one tile."""
        if self._sum is None or not self._count.all():
            raise UserInputError("stitching needs every output tile of the layout")
        y, x = self.layout.shape_yx
        return (self._sum / self._count)[..., :y, :x].astype(dtype)


def predict_tiled(
    forward: Callable[[np.ndarray, np.ndarray], np.ndarray],
    layout: TileLayout,
    padded: np.ndarray,
    availability: np.ndarray,
    batch_size: int,
) -> np.ndarray:
    """Network outputs of one whole slice, stitched: ``[O, Y, X]`` float32 (overlaps averaged).

    Args:
        forward: ``fn(tiles [N, H, W, K], availability [N, K]) -> outputs [N, h, w, O]``.
        layout: the slice's tile layout.
        padded: the slice padded by :meth:`TileLayout.pad`, channels last ``[Yp, Xp, K]``.
        availability: the marker availability ``[K]`` given with every tile.
        batch_size: tiles per call of ``forward``.
    """
    if batch_size < 1:
        raise UserInputError(f"batch size must be >= 1, got {batch_size}")
    size = layout.input_size
    origins = layout.origins
    avail = np.broadcast_to(np.asarray(availability, np.float32), (batch_size, len(availability)))
    stitcher = Stitcher(layout)
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        tiles = np.stack([padded[y : y + size, x : x + size] for y, x in chunk])
        out = forward(tiles, avail[: len(chunk)])
        for i, tile in enumerate(out):
            stitcher.add(start + i, np.moveaxis(tile, -1, 0))
    return stitcher.result()
