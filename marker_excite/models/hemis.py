"""HeMIS (Havaei et al. 2016) adapted to the UNet geometry, and HeMIS-MS.

Each marker has its own backend (the UNet's first conv block applied to that single channel, own
weights). The :class:`~marker_excite.layers.HeMISAbstraction` merges the backends of the AVAILABLE
markers by mean and variance; the rest of the UNet is the frontend, so input and output sizes equal
the UNet's (572 -> 388 at paper size). HeMIS-MS prepends Marker Sampling: dropped markers' backends are
excluded from the abstraction through the sampled availability vector (they are not zero-fed).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from marker_excite.layers import HeMISAbstraction, MarkerSampling
from marker_excite.models.geometry import UNetGeometry
from marker_excite.models.unet import conv_block, make_attention, unet_body


@keras.saving.register_keras_serializable(package="marker_excite")
class MarkerChannel(layers.Layer):
    """Selects channel ``index`` of the last axis, keeping it as a length-1 axis."""

    def __init__(self, index: int, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, x):
        return x[..., self.index : self.index + 1]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(index=self.index)
        return cfg


@keras.saving.register_keras_serializable(package="marker_excite")
class MarkerStack(layers.Layer):
    """Stacks a list of per-marker tensors [B, ..., F] into [B, K, ..., F]."""

    def call(self, inputs):
        return ops.stack(list(inputs), axis=1)

    def compute_output_shape(self, input_shape):
        first = input_shape[0]
        return (first[0], len(input_shape)) + tuple(first[1:])


def build_hemis(
    *,
    n_markers: int,
    n_outputs: int,
    input_size: int = 572,
    depth: int = 5,
    base_filters: int = 32,
    kernel_size: int = 3,
    sampling: str | None = None,
    sampling_rate: float = 0.5,
    seed: int | None = None,
    name: str = "hemis",
) -> keras.Model:
    """Build HeMIS (``sampling=None``) or HeMIS-MS (``sampling='zero'``) with the UNet's two-input contract."""
    geometry = UNetGeometry(depth=depth, kernel_size=kernel_size)
    geometry.output_size(input_size)
    image = keras.Input((input_size, input_size, n_markers), name="image")
    availability = keras.Input((n_markers,), name="availability")
    x, avail = image, availability
    if sampling is not None:
        x, avail = MarkerSampling(sampling, sampling_rate, seed=seed, name="marker_sampling")([x, avail])

    def backends_and_abstraction(inp):
        per_marker = [
            conv_block(MarkerChannel(k, name=f"marker{k}")(inp), base_filters, kernel_size, geometry.convs_per_block, name=f"backend{k}")
            for k in range(n_markers)
        ]
        return HeMISAbstraction(name="abstraction")([MarkerStack(name="backends")(per_marker), avail])

    logits = unet_body(
        x,
        make_attention(None, (), avail),
        geometry=geometry,
        input_size=input_size,
        base_filters=base_filters,
        n_outputs=n_outputs,
        first_block=backends_and_abstraction,
    )
    return keras.Model([image, availability], logits, name=name)
