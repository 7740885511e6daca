"""Tile geometry of a valid-convolution UNet, derived from its definition (never typed in twice).

A level of the encoder applies ``convs_per_block`` valid ``kernel_size`` convolutions (each removes
``kernel_size - 1`` pixels) and a 2x2 max-pool (needs an even size). The bottleneck is one more block.
Each decoder level up-samples x2, applies a 2x2 'same' convolution (size kept), concatenates the
centre-cropped skip and applies another block. With the paper's defaults (5 levels, 3x3 kernels,
2 convolutions per block) a 572 px input gives a 388 px output and the margin is 92 px.
"""

from __future__ import annotations

from dataclasses import dataclass

from marker_excite.errors import UserInputError


class GeometryError(UserInputError):
    """An input size that the network cannot process exactly."""


@dataclass(frozen=True)
class UNetGeometry:
    """Spatial bookkeeping of a valid-padding UNet with ``depth`` resolution levels (incl. bottleneck)."""

    depth: int = 5
    kernel_size: int = 3
    convs_per_block: int = 2

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise GeometryError(f"depth must be >= 1, got {self.depth}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise GeometryError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")
        if self.convs_per_block < 1:
            raise GeometryError(f"convs_per_block must be >= 1, got {self.convs_per_block}")

    @property
    def block_shrink(self) -> int:
        """Pixels lost by one conv block along one axis."""
        return self.convs_per_block * (self.kernel_size - 1)

    def _trace(self, size: int) -> tuple[list[int], int] | None:
        """Encoder block output sizes and the output size, or None if ``size`` is not valid."""
        skips: list[int] = []
        s = size
        for _ in range(self.depth - 1):
            s -= self.block_shrink
            if s < 2 or s % 2:
                return None
            skips.append(s)
            s //= 2
        s -= self.block_shrink
        if s < 1:
            return None
        for skip in reversed(skips):
            s = 2 * s
            if s > skip:
                return None
            s -= self.block_shrink
            if s < 1:
                return None
        return skips, s

    def is_valid_input(self, size: int) -> bool:
        return self._trace(int(size)) is not None

    def output_size(self, input_size: int) -> int:
        """Output size for an input size; raises :class:`GeometryError` naming the nearest valid sizes."""
        trace = self._trace(int(input_size))
        if trace is None:
            lo, hi = self.nearest_valid_inputs(int(input_size))
            near = ", ".join(str(v) for v in (lo, hi) if v is not None)
            raise GeometryError(
                f"input size {input_size} is not valid for a depth-{self.depth} UNet "
                f"(kernel {self.kernel_size}); nearest valid sizes: {near}"
            )
        return trace[1]

    def margin(self, input_size: int) -> int:
        """Padding per side = (input - output) / 2 (92 at the paper's 572 -> 388)."""
        return (int(input_size) - self.output_size(input_size)) // 2

    def skip_crops(self, input_size: int) -> list[int]:
        """Pixels cropped per side from each encoder skip, from the top level down (88, 40, 16, 4 at paper size)."""
        trace = self._trace(int(input_size))
        if trace is None:
            self.output_size(input_size)  # raises with the message
        skips, _ = trace  # type: ignore[misc]
        crops: list[int] = []
        s = skips[-1] // 2 - self.block_shrink if skips else 0
        ups: list[int] = []
        for skip in reversed(skips):
            up = 2 * s
            ups.append(up)
            crops.append((skip - up) // 2)
            s = up - self.block_shrink
        return list(reversed(crops))

    def valid_inputs(self, lo: int = 1, hi: int = 2048) -> list[int]:
        """All valid input sizes in [lo, hi]."""
        return [s for s in range(max(1, lo), hi + 1) if self.is_valid_input(s)]

    def nearest_valid_inputs(self, size: int) -> tuple[int | None, int | None]:
        """Largest valid size <= ``size`` and smallest valid size >= ``size``."""
        step = 2 ** (self.depth - 1)
        below = next((s for s in range(size, 0, -1) if self.is_valid_input(s)), None)
        above = next(
            (s for s in range(size, size + 4 * step + 8 * self.block_shrink + 64) if self.is_valid_input(s)), None
        )
        return below, above

    def input_for_output(self, output_size: int) -> int:
        """Smallest valid input whose output is at least ``output_size``."""
        s = max(1, int(output_size))
        while True:
            trace = self._trace(s + 2 * self._min_margin())
            if trace is not None and trace[1] >= output_size:
                return s + 2 * self._min_margin()
            s += 1

    def _min_margin(self) -> int:
        # total shrink (input - output) is constant for a given definition: shrink of all blocks,
        # encoder levels counted at their scale.
        total = 0
        for level in range(self.depth - 1):
            total += self.block_shrink * (2**level) * 2  # encoder block + decoder block at that level
        total += self.block_shrink * (2 ** (self.depth - 1))  # bottleneck
        return total // 2
