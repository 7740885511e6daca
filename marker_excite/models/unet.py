"""Functional-API UNet with valid convolutions, optional Marker Sampling and attention (ME / SE).

Architecture (the authors' implementation, see DESIGN.md): ``depth`` levels, two valid ``k x k``
convolutions + ReLU per block, widths ``base * 2^level``, 2x2 max-pool; the up path is nearest-neighbour
x2 up-sampling, a 2x2 'same' convolution, concatenation with the centre-cropped skip and a block; a 1x1
convolution gives the logits (background + classes). No batch normalisation.

Attention positions: ``I`` on the (sampled) input, ``E`` after every encoder block (before its skip and
pooling), ``B`` after the bottleneck block, ``D`` after every decoder block. MS-ME = E+B+D.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
from keras import layers

from marker_excite.layers import MarkerExcite, MarkerSampling, SqueezeExcite
from marker_excite.models.geometry import UNetGeometry

ATTENTION_POSITIONS = ("I", "E", "B", "D")


def conv_block(x, filters: int, kernel_size: int, convs: int, name: str):
    """``convs`` valid convolutions with ReLU."""
    for i in range(convs):
        x = layers.Conv2D(filters, kernel_size, padding="valid", activation="relu", name=f"{name}_conv{i + 1}")(x)
    return x


def make_attention(kind: str | None, positions: Sequence[str], availability) -> Callable[[object, str, str], object]:
    """A function ``attend(x, position, name)`` applying ME/SE where ``position`` is enabled."""
    enabled = set(positions or ())

    def attend(x, position: str, name: str):
        if kind is None or position not in enabled:
            return x
        if kind == "me":
            return MarkerExcite(name=f"{name}_me")([x, availability])
        if kind == "se":
            return SqueezeExcite(name=f"{name}_se")(x)
        raise ValueError(f"unknown attention kind {kind!r}; use 'me', 'se' or None")

    return attend


def unet_body(
    x,
    attend: Callable,
    *,
    geometry: UNetGeometry,
    input_size: int,
    base_filters: int,
    n_outputs: int,
    first_block=None,
):
    """Encoder, bottleneck and decoder from an input tensor to logits.

    ``first_block`` replaces the first encoder block (HeMIS plugs its backends + abstraction in there):
    a callable ``x -> features`` with the geometry of a normal block.
    """
    crops = geometry.skip_crops(input_size)
    k, convs = geometry.kernel_size, geometry.convs_per_block
    skips = []
    for level in range(geometry.depth - 1):
        filters = base_filters * 2**level
        if level == 0 and first_block is not None:
            x = first_block(x)
        else:
            x = conv_block(x, filters, k, convs, name=f"enc{level}")
            x = attend(x, "E", f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = conv_block(x, base_filters * 2 ** (geometry.depth - 1), k, convs, name="bottleneck")
    x = attend(x, "B", "bottleneck")
    for level in reversed(range(geometry.depth - 1)):
        filters = base_filters * 2**level
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"dec{level}_up")(x)
        x = layers.Conv2D(filters, 2, padding="same", activation="relu", name=f"dec{level}_upconv")(x)
        skip = layers.Cropping2D(crops[level], name=f"dec{level}_crop")(skips[level])
        x = layers.Concatenate(name=f"dec{level}_concat")([skip, x])
        x = conv_block(x, filters, k, convs, name=f"dec{level}")
        x = attend(x, "D", f"dec{level}")
    return layers.Conv2D(n_outputs, 1, name="logits")(x)


def build_unet(
    *,
    n_markers: int,
    n_outputs: int,
    input_size: int = 572,
    depth: int = 5,
    base_filters: int = 32,
    kernel_size: int = 3,
    sampling: str | None = None,
    sampling_rate: float = 0.5,
    attention: str | None = None,
    attention_positions: Sequence[str] = (),
    seed: int | None = None,
    name: str = "unet",
) -> keras.Model:
    """Build a UNet with inputs ``image`` [B,H,W,K], ``availability`` [B,K] and output ``logits``."""
    geometry = UNetGeometry(depth=depth, kernel_size=kernel_size)
    geometry.output_size(input_size)  # raises GeometryError with the nearest valid sizes
    bad = sorted(set(attention_positions) - set(ATTENTION_POSITIONS))
    if bad:
        raise ValueError(f"unknown attention position(s) {bad}; use {ATTENTION_POSITIONS}")
    image = keras.Input((input_size, input_size, n_markers), name="image")
    availability = keras.Input((n_markers,), name="availability")
    x, avail = image, availability
    if sampling is not None:
        x, avail = MarkerSampling(sampling, sampling_rate, seed=seed, name="marker_sampling")([x, avail])
    attend = make_attention(attention, attention_positions, avail)
    x = attend(x, "I", "input")
    logits = unet_body(x, attend, geometry=geometry, input_size=input_size, base_filters=base_filters, n_outputs=n_outputs)
    return keras.Model([image, availability], logits, name=name)
