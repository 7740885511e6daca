"""HeMIS (Havaei et al. 2016) adapted to the UNet geometry, and HeMIS-MS.

Each marker has its own backend: the UNet's first conv block applied to that single channel, with its
own weights. :class:`~marker_excite.layers.HeMISAbstraction` merges the backends of the AVAILABLE
markers by mean and variance (2F channels); the rest of the UNet is the frontend (the abstraction is the
top-level skip), so input and output sizes equal the UNet's (572 -> 388 at paper size). HeMIS-MS
prepends Marker Sampling: backends of dropped markers are excluded from the abstraction through the
sampled availability vector (they are not zero-fed into the moments).
"""

from __future__ import annotations

import keras
from keras import ops

from marker_excite.layers import HeMISAbstraction
from marker_excite.models.config import ModelConfig
from marker_excite.models.unet import UNetBuilder, model_name


@keras.saving.register_keras_serializable(package="marker_excite")
class MarkerChannel(keras.layers.Layer):
    """Selects channel ``index`` of the last axis, keeping a length-1 channel axis."""

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
class MarkerStack(keras.layers.Layer):
    """Stacks K per-marker tensors ``[B, ..., F]`` into ``[B, K, ..., F]``."""

    def call(self, inputs):
        return ops.stack(list(inputs), axis=1)

    def compute_output_shape(self, input_shape):
        first = tuple(input_shape[0])
        return (first[0], len(input_shape)) + first[1:]


def build_hemis(config: ModelConfig) -> keras.Model:
    """HeMIS (``config.sampling`` None) or HeMIS-MS (``"zero"``) with the UNet's two-input contract.

    Needs ``config.depth >= 2`` (the first level is replaced by the backends and the abstraction).
    """
    b = UNetBuilder(config)
    image, availability = b.inputs()
    x, avail = b.sample(image, availability)
    backends = [
        b.block(MarkerChannel(k, name=f"marker{k}")(x), b.widths[0], f"backend{k}") for k in range(len(config.markers))
    ]
    merged = HeMISAbstraction(name="abstraction")([MarkerStack(name="backends")(backends), avail])
    skips = [merged]
    x = keras.layers.MaxPooling2D(2, name="enc0_pool")(merged)
    x = b.encoder(x, avail, skips, start_level=1)
    x = b.decoder(x, avail, skips)
    return keras.Model([image, availability], b.head(x), name=model_name(config.name))
